-- +goose Up
-- What the developer portal knows of an app beyond its OAuth client: the
-- owning organisation, the wizard preset, a description and links. One row
-- per environment and client_id (the client itself lives in that
-- environment's authorization database). Times are Unix seconds.
CREATE TABLE portal_app (
    env         TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    preset      TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    logo_uri    TEXT NOT NULL DEFAULT '',
    homepage    TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (env, client_id)
);
CREATE INDEX portal_app_org ON portal_app (org_id);

-- +goose Down
DROP TABLE portal_app;
