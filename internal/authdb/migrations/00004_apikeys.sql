-- +goose Up
-- API keys for server-to-server callers of the FHIR API. The key itself is
-- shown once at creation and stored only as its SHA-256 (key_hash); prefix
-- is its first, non-secret characters for listing. A rotated key points at
-- its successor (replaced_by) and keeps working until expires_at.
CREATE TABLE api_key (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    patient      TEXT NOT NULL DEFAULT '',
    allow_ips    TEXT NOT NULL DEFAULT '',
    created_at   {{int}} NOT NULL,
    expires_at   {{int}},
    revoked_at   {{int}},
    last_used_at {{int}},
    replaced_by  TEXT NOT NULL DEFAULT ''
);

-- Clients allowed to authenticate to the FHIR API with HTTP Basic
-- (client id + secret); off unless a row exists.
CREATE TABLE oauth_client_basic (
    client_id  TEXT PRIMARY KEY,
    enabled_at {{int}} NOT NULL
);

-- +goose Down
DROP TABLE oauth_client_basic;
DROP TABLE api_key;
