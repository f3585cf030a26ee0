-- +goose Up
-- Append-only revocation log: one row per revocation (access token,
-- token family, API key, client), written in the same transaction as the
-- revocation itself. Every server process polls it (WHERE seq > last) to
-- evict its in-memory credential caches, so a revocation by any process
-- reaches every instance within one poll interval. Rows are pruned an hour
-- after they are written. On PostgreSQL, sequence values of concurrent
-- transactions can become visible out of order (and rolled-back ones
-- leave gaps): the poller re-reads from the first gap until it fills or
-- times out.
CREATE TABLE oauth_revocation_log (
{{- if postgres}}
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
{{- else}}
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
{{- end}}
    kind       TEXT NOT NULL CHECK (kind IN ('token', 'family', 'apikey', 'client')),
    subject    TEXT NOT NULL,
    created_at {{int}} NOT NULL
);
CREATE INDEX oauth_revocation_log_created ON oauth_revocation_log (created_at);

-- +goose Down
DROP TABLE oauth_revocation_log;
