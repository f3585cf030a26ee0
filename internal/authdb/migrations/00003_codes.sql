-- +goose Up
-- Authorization codes, by SHA-256 only. A used code keeps its row (used_at
-- set) until it is pruned, so a second use is recognised as a replay.
CREATE TABLE oauth_code (
    code_hash  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    grant_json TEXT NOT NULL,
    expires_at {{int}} NOT NULL,
    used_at    {{int}}
);
CREATE INDEX oauth_code_exp ON oauth_code (expires_at);

-- A token family is everything issued from one authorization code: its
-- access tokens (by jti) and its chain of rotated refresh tokens.
CREATE TABLE oauth_token_family (
    family_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at {{int}} NOT NULL,
    expires_at {{int}} NOT NULL,
    revoked_at {{int}}
);
CREATE INDEX oauth_token_family_subject ON oauth_token_family (subject, client_id);
CREATE INDEX oauth_token_family_exp ON oauth_token_family (expires_at);

CREATE TABLE oauth_family_access (
    family_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at {{int}} NOT NULL,
    PRIMARY KEY (family_id, jti)
);
CREATE INDEX oauth_family_access_exp ON oauth_family_access (expires_at);

CREATE TABLE oauth_refresh_token (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    session    TEXT NOT NULL,
    issued_at  {{int}} NOT NULL,
    expires_at {{int}} NOT NULL,
    rotated_at {{int}}
);
-- (family_id, rotated_at) finds the current token of a long chain at once.
CREATE INDEX oauth_refresh_token_family ON oauth_refresh_token (family_id, rotated_at);
CREATE INDEX oauth_refresh_token_exp ON oauth_refresh_token (expires_at);

-- +goose Down
DROP TABLE oauth_refresh_token;
DROP TABLE oauth_family_access;
DROP TABLE oauth_token_family;
DROP TABLE oauth_code;
