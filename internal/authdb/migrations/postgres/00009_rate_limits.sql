-- +goose Up
-- A client's or API key's own rate limit on the FHIR API: rate_limit is
-- '' (the server's default for its class), 'none' (unlimited) or N/PERIOD
-- (e.g. '500/s'), rate_limit_burst its burst in cost units (0: N).
ALTER TABLE oauth_client ADD COLUMN rate_limit TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_client ADD COLUMN rate_limit_burst BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_key ADD COLUMN rate_limit TEXT NOT NULL DEFAULT '';
ALTER TABLE api_key ADD COLUMN rate_limit_burst BIGINT NOT NULL DEFAULT 0;
-- Changes of those limits go through the revocation log (kind 'ratelimit',
-- subject 'client:ID' or 'apikey:ID'), so every instance applies them
-- within one poll.
ALTER TABLE oauth_revocation_log DROP CONSTRAINT oauth_revocation_log_kind_check;
ALTER TABLE oauth_revocation_log ADD CONSTRAINT oauth_revocation_log_kind_check
    CHECK (kind IN ('token', 'family', 'apikey', 'client', 'ratelimit'));

-- +goose Down
DELETE FROM oauth_revocation_log WHERE kind = 'ratelimit';
ALTER TABLE oauth_revocation_log DROP CONSTRAINT oauth_revocation_log_kind_check;
ALTER TABLE oauth_revocation_log ADD CONSTRAINT oauth_revocation_log_kind_check
    CHECK (kind IN ('token', 'family', 'apikey', 'client'));
ALTER TABLE api_key DROP COLUMN rate_limit_burst;
ALTER TABLE api_key DROP COLUMN rate_limit;
ALTER TABLE oauth_client DROP COLUMN rate_limit_burst;
ALTER TABLE oauth_client DROP COLUMN rate_limit;
