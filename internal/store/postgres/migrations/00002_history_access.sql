-- +goose Up
-- The rows access filters test (tokens, local references) of every
-- superseded version, keyed by its history seq: a caller limited to a
-- compartment or to categories sees an earlier version only when that
-- version itself was inside the limit. Copied from the index tables when a
-- version is superseded; the current version keeps using the index tables.
CREATE TABLE history_token (
    seq    BIGINT NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    code   TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (seq, param, code, system)
);

CREATE TABLE history_reference (
    seq         BIGINT NOT NULL,
    param       TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (seq, param, target_id, target_type)
);

-- +goose Down
DROP TABLE history_reference;
DROP TABLE history_token;
