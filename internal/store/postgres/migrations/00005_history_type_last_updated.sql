-- +goose Up
-- Versions by type and last_updated (with their seq, so it answers alone):
-- a _history?_since=T poll, the common pattern of a system keeping in
-- step, counts and pages the versions of the types it may see written
-- since T from one range per type, instead of scanning the history (every
-- version's body) from the newest back, or every AuditEvent since T.
-- Created over the existing rows (writes wait while it is built).
CREATE INDEX history_type_last_updated ON history (type, last_updated, seq);

-- +goose Down
DROP INDEX history_type_last_updated;
