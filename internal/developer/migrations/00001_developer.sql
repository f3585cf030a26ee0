-- +goose Up
-- Developer accounts of the developer portal (not FHIR users: no relation
-- to oauth_account).
CREATE TABLE dev_developer (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    verified      {{int}} NOT NULL DEFAULT 0,
    operator      {{int}} NOT NULL DEFAULT 0,
    -- TOTP secret (AES-GCM sealed when the portal has a key), the secret
    -- being enrolled, and the last accepted time step (no replay).
    totp_secret   TEXT NOT NULL DEFAULT '',
    totp_pending  TEXT NOT NULL DEFAULT '',
    totp_step     {{int}} NOT NULL DEFAULT 0,
    created_at    {{int}} NOT NULL
);

-- TOTP recovery codes, by hash; used_at > 0 once used.
CREATE TABLE dev_recovery_code (
    developer_id TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    used_at      {{int}} NOT NULL DEFAULT 0,
    PRIMARY KEY (developer_id, code_hash)
);

-- Single-use tokens (email verification, password reset, invitation,
-- second-factor step), stored by SHA-256 only.
CREATE TABLE dev_token (
    token_hash   TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    developer_id TEXT NOT NULL DEFAULT '',
    org_id       TEXT NOT NULL DEFAULT '',
    email        TEXT NOT NULL DEFAULT '',
    role         TEXT NOT NULL DEFAULT '',
    created_at   {{int}} NOT NULL,
    expires_at   {{int}} NOT NULL,
    used_at      {{int}} NOT NULL DEFAULT 0
);
CREATE INDEX dev_token_exp ON dev_token (expires_at);
CREATE INDEX dev_token_org ON dev_token (org_id, kind);

-- Failed logins per key ("email:..." or "ip:..."), for lockout.
CREATE TABLE dev_login_failure (
    key TEXT NOT NULL,
    at  {{int}} NOT NULL
);
CREATE INDEX dev_login_failure_key ON dev_login_failure (key, at);

-- Browser sessions of the portal, by the SHA-256 of the cookie value.
CREATE TABLE dev_session (
    token_hash TEXT PRIMARY KEY,
    sid        TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL DEFAULT '',
    csrf       TEXT NOT NULL,
    auth_time  {{int}} NOT NULL DEFAULT 0,
    expires_at {{int}} NOT NULL
);
CREATE INDEX dev_session_exp ON dev_session (expires_at);

-- Organisations and their members (role owner or developer).
CREATE TABLE dev_org (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at {{int}} NOT NULL
);
CREATE TABLE dev_member (
    org_id       TEXT NOT NULL,
    developer_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   {{int}} NOT NULL,
    PRIMARY KEY (org_id, developer_id)
);
CREATE INDEX dev_member_dev ON dev_member (developer_id);

-- Terms of use: versioned texts, and who accepted which version when.
CREATE TABLE dev_terms (
    version    INTEGER PRIMARY KEY,
    body       TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at {{int}} NOT NULL
);
CREATE TABLE dev_terms_acceptance (
    developer_id TEXT NOT NULL,
    version      {{int}} NOT NULL,
    accepted_at  {{int}} NOT NULL,
    PRIMARY KEY (developer_id, version)
);

-- Developer API tokens (lpd_...), by SHA-256.
CREATE TABLE dev_api_token (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    developer_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   {{int}} NOT NULL,
    last_used_at {{int}} NOT NULL DEFAULT 0
);
CREATE INDEX dev_api_token_dev ON dev_api_token (developer_id);

-- +goose Down
DROP TABLE dev_api_token;
DROP TABLE dev_terms_acceptance;
DROP TABLE dev_terms;
DROP TABLE dev_member;
DROP TABLE dev_org;
DROP TABLE dev_session;
DROP TABLE dev_login_failure;
DROP TABLE dev_token;
DROP TABLE dev_recovery_code;
DROP TABLE dev_developer;
