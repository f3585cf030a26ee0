-- +goose Up
CREATE TABLE audit_chain (
    chain_id   TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    host       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE audit_record (
    chain_id     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    version      INTEGER NOT NULL,
    recorded_at  BIGINT NOT NULL,
    body         BYTEA NOT NULL,
    materialized BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (chain_id, seq)
);

CREATE INDEX audit_record_pending ON audit_record (recorded_at) WHERE NOT materialized;
CREATE INDEX audit_record_resource ON audit_record (resource_id);

-- +goose Down
DROP TABLE audit_record;
DROP TABLE audit_chain;
