-- +goose Up
-- The (rid, param, ...) indexes cover the per-candidate checks of searches.
-- Current version of every resource; rid is the surrogate key used by the
-- index tables and search snapshots.
CREATE TABLE resources (
    rid          INTEGER PRIMARY KEY,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    method       TEXT    NOT NULL,
    idx_mask     INTEGER NOT NULL DEFAULT 0,
    body         BLOB    NOT NULL
);
CREATE UNIQUE INDEX resources_type_id ON resources (type, id);
CREATE INDEX resources_type_last_updated ON resources (type, last_updated);
CREATE INDEX resources_last_updated ON resources (last_updated);
-- Narrow covering index: searches check type/deleted per candidate rid here
-- instead of in the wide table rows (bodies inline).
CREATE INDEX resources_live ON resources (rid, type, deleted);

-- Every version (delete markers included); seq orders history pages.
CREATE TABLE history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    rid          INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    method       TEXT    NOT NULL,
    body         BLOB    NOT NULL
);
CREATE UNIQUE INDEX history_type_id_version ON history (type, id, version);
CREATE INDEX history_type_seq ON history (type, seq);

CREATE TABLE idx_string (
    rid   INTEGER NOT NULL,
    type  TEXT    NOT NULL,
    param TEXT    NOT NULL,
    grp   INTEGER NOT NULL DEFAULT 0,
    norm  TEXT    NOT NULL,
    exact TEXT    NOT NULL
);
CREATE INDEX idx_string_rid ON idx_string (rid, param);
CREATE INDEX idx_string_search ON idx_string (type, param, norm, rid);

CREATE TABLE idx_token (
    rid    INTEGER NOT NULL,
    type   TEXT    NOT NULL,
    param  TEXT    NOT NULL,
    grp    INTEGER NOT NULL DEFAULT 0,
    system TEXT    NOT NULL,
    code   TEXT    NOT NULL,
    text   TEXT    NOT NULL
);
CREATE INDEX idx_token_rid ON idx_token (rid, param, code, system);
CREATE INDEX idx_token_search ON idx_token (type, param, code, system, rid);

CREATE TABLE idx_reference (
    rid         INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    param       TEXT    NOT NULL,
    grp         INTEGER NOT NULL DEFAULT 0,
    target_type TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    url         TEXT    NOT NULL
);
CREATE INDEX idx_reference_rid ON idx_reference (rid, param, target_id, target_type);
-- Serves both searches (target_id, type, param[, target_type]) and lookups
-- by target (_revinclude, _has, chains, compartments).
CREATE INDEX idx_reference_target ON idx_reference (target_id, type, param, target_type, rid);
CREATE INDEX idx_reference_url ON idx_reference (type, param, url, rid);

CREATE TABLE idx_date (
    rid   INTEGER NOT NULL,
    type  TEXT    NOT NULL,
    param TEXT    NOT NULL,
    grp   INTEGER NOT NULL DEFAULT 0,
    lo    INTEGER NOT NULL,
    hi    INTEGER NOT NULL
);
CREATE INDEX idx_date_rid ON idx_date (rid, param, lo, hi);
CREATE INDEX idx_date_search ON idx_date (type, param, lo, hi, rid);

CREATE TABLE idx_number (
    rid   INTEGER NOT NULL,
    type  TEXT    NOT NULL,
    param TEXT    NOT NULL,
    grp   INTEGER NOT NULL DEFAULT 0,
    lo    REAL    NOT NULL,
    hi    REAL    NOT NULL
);
CREATE INDEX idx_number_rid ON idx_number (rid, param);
CREATE INDEX idx_number_search ON idx_number (type, param, lo, hi, rid);

CREATE TABLE idx_quantity (
    rid    INTEGER NOT NULL,
    type   TEXT    NOT NULL,
    param  TEXT    NOT NULL,
    grp    INTEGER NOT NULL DEFAULT 0,
    system TEXT    NOT NULL,
    code   TEXT    NOT NULL,
    unit   TEXT    NOT NULL,
    lo     REAL    NOT NULL,
    hi     REAL    NOT NULL
);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);
CREATE INDEX idx_quantity_search ON idx_quantity (type, param, lo, hi, rid);

CREATE TABLE idx_uri (
    rid   INTEGER NOT NULL,
    type  TEXT    NOT NULL,
    param TEXT    NOT NULL,
    grp   INTEGER NOT NULL DEFAULT 0,
    uri   TEXT    NOT NULL
);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param);
CREATE INDEX idx_uri_search ON idx_uri (type, param, uri, rid);

-- Ordered match lists of searches, for stable paging.
CREATE TABLE search_snapshot (
    id        TEXT    PRIMARY KEY,
    created   INTEGER NOT NULL,
    total     INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    query     BLOB,
    rids      BLOB    NOT NULL
);
CREATE INDEX search_snapshot_created ON search_snapshot (created);

-- +goose Down
DROP TABLE search_snapshot;
DROP TABLE idx_uri;
DROP TABLE idx_quantity;
DROP TABLE idx_number;
DROP TABLE idx_date;
DROP TABLE idx_reference;
DROP TABLE idx_token;
DROP TABLE idx_string;
DROP TABLE history;
DROP TABLE resources;
