-- +goose Up
-- The owner of a client or API key: who manages it ("admin", or a future
-- developer account's id); empty for those created before owners existed
-- or without one. Listings filter on it.
ALTER TABLE oauth_client ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE api_key ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX oauth_client_owner ON oauth_client (owner);
CREATE INDEX api_key_owner ON api_key (owner);

-- +goose Down
DROP INDEX api_key_owner;
DROP INDEX oauth_client_owner;
ALTER TABLE api_key DROP COLUMN owner;
ALTER TABLE oauth_client DROP COLUMN owner;
