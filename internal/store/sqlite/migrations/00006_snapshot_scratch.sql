-- +goose Up
-- Paging snapshots moved to the scratch file beside the database
-- (scratch.search_snapshot, scratch.go): their commits, made during reads,
-- no longer cost the readers their page cache of the FHIR data. Those
-- stored here are dropped (a lost snapshot re-runs its search at the
-- page's offset); the empty table stays for an earlier release run on
-- this file.
DELETE FROM search_snapshot;

-- +goose Down
