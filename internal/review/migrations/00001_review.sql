-- +goose Up
-- Production access requests of the developer portal: an organisation
-- asks for its sandbox app to be created in production; an operator
-- approves (which creates the production client) or declines with a
-- reason. Times are Unix seconds. app is the admin ClientRequest (JSON)
-- to create.
CREATE TABLE review_request (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL,
    requested_by         TEXT NOT NULL,
    app                  TEXT NOT NULL,
    sandbox_client_id    TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL CHECK (status IN ('pending', 'approving', 'approved', 'declined')),
    created_at           {{int}} NOT NULL,
    due_at               {{int}} NOT NULL,
    decided_by           TEXT NOT NULL DEFAULT '',
    decided_at           {{int}},
    reason               TEXT NOT NULL DEFAULT '',
    production_client_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX review_request_org ON review_request (org_id, created_at);
CREATE INDEX review_request_status ON review_request (status, due_at);

-- +goose Down
DROP TABLE review_request;
