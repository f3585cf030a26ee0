-- +goose Up
CREATE TABLE export_job (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    principal        TEXT NOT NULL,
    request          TEXT NOT NULL,
    request_url      TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_until      {{int}} NOT NULL DEFAULT 0,
    progress         TEXT NOT NULL DEFAULT '',
    transaction_time {{int}} NOT NULL,
    created_at       {{int}} NOT NULL,
    expires_at       {{int}} NOT NULL DEFAULT 0,
    manifest         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX export_job_claim ON export_job (status, lease_until);
CREATE INDEX export_job_owner ON export_job (owner, status);

-- +goose Down
DROP TABLE export_job;
