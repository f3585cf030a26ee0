-- +goose Up
-- Per-organisation webhook endpoints and the durable outbox of their
-- deliveries. secret_enc is the signing secret sealed with the server's
-- key-encryption key (AES-256-GCM; "plain:" prefix when the server runs
-- without one). Times are Unix seconds.
CREATE TABLE webhook_endpoint (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    url        TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    events     TEXT NOT NULL,
    created_at {{int}} NOT NULL
);
CREATE INDEX webhook_endpoint_org ON webhook_endpoint (org_id);
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      {{int}} NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        {{int}} NOT NULL DEFAULT 0,
    next_attempt_at {{int}} NOT NULL,
    claimed_until   {{int}} NOT NULL DEFAULT 0,
    last_status     {{int}} NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    delivered_at    {{int}}
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX webhook_outbox_endpoint ON webhook_outbox (endpoint_id, created_at);

-- +goose Down
DROP TABLE webhook_outbox;
DROP TABLE webhook_endpoint;
