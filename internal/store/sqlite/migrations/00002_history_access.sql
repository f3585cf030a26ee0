-- +goose Up
-- The rows access filters test (tokens, local references) of every
-- superseded version, keyed by its history seq: a caller limited to a
-- compartment or to categories sees an earlier version only when that
-- version itself was inside the limit. Copied from the index tables when a
-- version is superseded; the current version keeps using the index tables.
CREATE TABLE history_token (
    seq    INTEGER NOT NULL,
    param  TEXT    NOT NULL,
    code   TEXT    NOT NULL,
    system TEXT    NOT NULL,
    PRIMARY KEY (seq, param, code, system)
) WITHOUT ROWID;

CREATE TABLE history_reference (
    seq         INTEGER NOT NULL,
    param       TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    PRIMARY KEY (seq, param, target_id, target_type)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE history_reference;
DROP TABLE history_token;
