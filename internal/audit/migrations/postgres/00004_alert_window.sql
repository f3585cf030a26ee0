-- +goose Up
-- Alert windows every instance shares (without Redis): one row per rule
-- key and window, its count added to by each instance every second.
CREATE TABLE audit_alert_window (
    wkey    TEXT PRIMARY KEY,
    expires BIGINT NOT NULL,
    count   BIGINT NOT NULL
);
CREATE INDEX audit_alert_window_expires ON audit_alert_window (expires);

-- +goose Down
DROP TABLE audit_alert_window;
