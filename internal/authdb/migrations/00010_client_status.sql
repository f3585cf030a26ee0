-- +goose Up
-- Client secret rotation with overlap: the previous secret's hash stays
-- valid until prev_secret_until (Unix seconds). Suspension of clients and
-- API keys: suspended_at (Unix seconds, NULL: active) and the reason an
-- operator gave. last_used_addr is the address of the last recorded use
-- of an API key (written with last_used_at, at most about once a minute).
ALTER TABLE oauth_client ADD COLUMN prev_secret_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_client ADD COLUMN prev_secret_until {{int}};
ALTER TABLE oauth_client ADD COLUMN suspended_at {{int}};
ALTER TABLE oauth_client ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE api_key ADD COLUMN suspended_at {{int}};
ALTER TABLE api_key ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE api_key ADD COLUMN last_used_addr TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_key DROP COLUMN last_used_addr;
ALTER TABLE api_key DROP COLUMN suspend_reason;
ALTER TABLE api_key DROP COLUMN suspended_at;
ALTER TABLE oauth_client DROP COLUMN suspend_reason;
ALTER TABLE oauth_client DROP COLUMN suspended_at;
ALTER TABLE oauth_client DROP COLUMN prev_secret_until;
ALTER TABLE oauth_client DROP COLUMN prev_secret_hash;
