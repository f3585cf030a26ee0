-- +goose Up
-- A client's or API key's own rate limit on the FHIR API: rate_limit is
-- '' (the server's default for its class), 'none' (unlimited) or N/PERIOD
-- (e.g. '500/s'), rate_limit_burst its burst in cost units (0: N).
ALTER TABLE oauth_client ADD COLUMN rate_limit TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_client ADD COLUMN rate_limit_burst {{int}} NOT NULL DEFAULT 0;
ALTER TABLE api_key ADD COLUMN rate_limit TEXT NOT NULL DEFAULT '';
ALTER TABLE api_key ADD COLUMN rate_limit_burst {{int}} NOT NULL DEFAULT 0;
-- Changes of those limits go through the revocation log (kind 'ratelimit',
-- subject 'client:ID' or 'apikey:ID'), so every instance applies them
{{- if postgres}}
-- within one poll.
ALTER TABLE oauth_revocation_log DROP CONSTRAINT oauth_revocation_log_kind_check;
ALTER TABLE oauth_revocation_log ADD CONSTRAINT oauth_revocation_log_kind_check
    CHECK (kind IN ('token', 'family', 'apikey', 'client', 'ratelimit'));
{{- else}}
-- within one poll. SQLite cannot alter a CHECK: the table is rebuilt,
-- keeping its rows and its sequence (running pollers must not see seq go
-- back).
DROP INDEX oauth_revocation_log_created;
ALTER TABLE oauth_revocation_log RENAME TO oauth_revocation_log_old;
CREATE TABLE oauth_revocation_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('token', 'family', 'apikey', 'client', 'ratelimit')),
    subject    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO oauth_revocation_log (seq, kind, subject, created_at)
    SELECT seq, kind, subject, created_at FROM oauth_revocation_log_old ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'oauth_revocation_log';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'oauth_revocation_log', seq FROM sqlite_sequence WHERE name = 'oauth_revocation_log_old';
DROP TABLE oauth_revocation_log_old;
CREATE INDEX oauth_revocation_log_created ON oauth_revocation_log (created_at);
{{- end}}

-- +goose Down
{{- if postgres}}
DELETE FROM oauth_revocation_log WHERE kind = 'ratelimit';
ALTER TABLE oauth_revocation_log DROP CONSTRAINT oauth_revocation_log_kind_check;
ALTER TABLE oauth_revocation_log ADD CONSTRAINT oauth_revocation_log_kind_check
    CHECK (kind IN ('token', 'family', 'apikey', 'client'));
{{- else}}
DROP INDEX oauth_revocation_log_created;
ALTER TABLE oauth_revocation_log RENAME TO oauth_revocation_log_old;
CREATE TABLE oauth_revocation_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('token', 'family', 'apikey', 'client')),
    subject    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO oauth_revocation_log (seq, kind, subject, created_at)
    SELECT seq, kind, subject, created_at FROM oauth_revocation_log_old WHERE kind <> 'ratelimit' ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'oauth_revocation_log';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'oauth_revocation_log', seq FROM sqlite_sequence WHERE name = 'oauth_revocation_log_old';
DROP TABLE oauth_revocation_log_old;
CREATE INDEX oauth_revocation_log_created ON oauth_revocation_log (created_at);
{{- end}}
ALTER TABLE api_key DROP COLUMN rate_limit_burst;
ALTER TABLE api_key DROP COLUMN rate_limit;
ALTER TABLE oauth_client DROP COLUMN rate_limit_burst;
ALTER TABLE oauth_client DROP COLUMN rate_limit;
