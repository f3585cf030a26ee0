-- +goose Up
-- A resource's rid and whether it is deleted, by (type, id), in one probe
-- of a narrow index: a _has finds the referenced resources by (type, id)
-- from their referrers' index rows and must skip deleted ones, which the
-- unique (type, id) index alone cannot tell without reading the wide row
-- (bodies inline). Created over the existing rows.
CREATE INDEX resources_type_id_live ON resources (type, id, deleted);

-- +goose Down
DROP INDEX resources_type_id_live;
