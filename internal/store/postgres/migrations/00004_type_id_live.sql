-- +goose Up
-- A resource's rid and whether it is deleted, by (type, id), from the
-- index alone (an index-only scan): a _has finds the referenced resources
-- by (type, id) from their referrers' index rows, and an _include its
-- targets, and both must skip deleted ones, which the unique (type, id)
-- index cannot tell without a visit to the wide row. SQLite has had the
-- same index since its migration 00003. Created over the existing rows.
CREATE INDEX resources_type_id_live ON resources (type, id) INCLUDE (rid, deleted);

-- +goose Down
DROP INDEX resources_type_id_live;
