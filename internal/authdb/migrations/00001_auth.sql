-- +goose Up
CREATE TABLE oauth_client (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL DEFAULT '',
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    launch_uri    TEXT NOT NULL DEFAULT '',
    scopes        TEXT NOT NULL DEFAULT '',
    jwks          TEXT NOT NULL DEFAULT '',
    jwks_uri      TEXT NOT NULL DEFAULT '',
    created_at    {{int}} NOT NULL
);

CREATE TABLE oauth_signing_key (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    private_enc   TEXT NOT NULL,
    created_at    {{int}} NOT NULL,
    retired_at    {{int}},
    publish_until {{int}}
);
CREATE INDEX oauth_signing_key_alg ON oauth_signing_key (alg, created_at);

CREATE TABLE oauth_assertion_jti (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at {{int}} NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_assertion_jti_exp ON oauth_assertion_jti (expires_at);

CREATE TABLE oauth_revoked_token (
    jti        TEXT PRIMARY KEY,
    expires_at {{int}} NOT NULL
);
CREATE INDEX oauth_revoked_token_exp ON oauth_revoked_token (expires_at);

-- +goose Down
DROP TABLE oauth_revoked_token;
DROP TABLE oauth_assertion_jti;
DROP TABLE oauth_signing_key;
DROP TABLE oauth_client;
