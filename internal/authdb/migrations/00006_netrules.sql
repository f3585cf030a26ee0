-- +goose Up
-- Per-client network rules: the addresses the client's tokens may be used
-- from (CIDRs, space-separated; empty = anywhere) and the browser origins
-- allowed to call the FHIR API with them (CORS; space-separated). Rows of
-- deleted clients are ignored (reads join oauth_client) and replaced when
-- the rules are set again.
CREATE TABLE oauth_client_netrules (
    client_id    TEXT PRIMARY KEY,
    allow_ips    TEXT NOT NULL DEFAULT '',
    cors_origins TEXT NOT NULL DEFAULT '',
    updated_at   {{int}} NOT NULL
);

-- +goose Down
DROP TABLE oauth_client_netrules;
