-- +goose Up
-- Versions by last_updated (with their type and seq, so it answers alone):
-- a _history?_since=T poll, the common pattern of a system keeping in
-- step, finds the versions written since T in this range instead of
-- scanning the history table (every version's body) from the newest back.
-- Created over the existing rows.
CREATE INDEX history_last_updated ON history (last_updated, type, seq);

-- +goose Down
DROP INDEX history_last_updated;
