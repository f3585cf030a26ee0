-- +goose Up
-- User accounts (patients and practitioners) who log in at /authorize.
CREATE TABLE oauth_account (
    subject       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    fhir_user     TEXT NOT NULL,
    created_at    {{int}} NOT NULL
);

-- Failed logins, per key ("user:NAME" or "ip:ADDR"), for lockout.
CREATE TABLE oauth_login_failure (
    key TEXT NOT NULL,
    at  {{int}} NOT NULL
);
CREATE INDEX oauth_login_failure_key ON oauth_login_failure (key, at);

-- Browser sessions of the authorization pages; the cookie value is stored
-- only as its SHA-256. sid is a stable, non-secret id that survives the
-- rotation of the cookie at login.
CREATE TABLE oauth_session (
    token_hash TEXT PRIMARY KEY,
    sid        TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL DEFAULT '',
    csrf       TEXT NOT NULL,
    auth_time  {{int}} NOT NULL DEFAULT 0,
    expires_at {{int}} NOT NULL
);
CREATE INDEX oauth_session_exp ON oauth_session (expires_at);

-- Authorization requests in progress (between /authorize and the code).
CREATE TABLE oauth_authz_request (
    id_hash    TEXT PRIMARY KEY,
    sid        TEXT NOT NULL,
    data       TEXT NOT NULL,
    expires_at {{int}} NOT NULL
);
CREATE INDEX oauth_authz_request_exp ON oauth_authz_request (expires_at);

-- EHR launch values (single-use, client-bound, short-lived), by hash.
CREATE TABLE oauth_launch (
    id_hash    TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    patient    TEXT NOT NULL DEFAULT '',
    encounter  TEXT NOT NULL DEFAULT '',
    expires_at {{int}} NOT NULL
);
CREATE INDEX oauth_launch_exp ON oauth_launch (expires_at);

-- +goose Down
DROP TABLE oauth_launch;
DROP TABLE oauth_authz_request;
DROP TABLE oauth_session;
DROP TABLE oauth_login_failure;
DROP TABLE oauth_account;
