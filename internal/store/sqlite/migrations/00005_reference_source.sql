-- +goose Up
-- The reference rows by their resource's type, parameter and rid, with
-- the target (so it answers alone): a _has follows the references of its
-- sources (Observations with a common code, say) one parameter of one
-- type, in rid order, from a few pages of this index instead of one page
-- each of idx_reference_rid (every reference of every type), pages that
-- every read transaction after a commit reads again. Created over the
-- existing rows.
CREATE INDEX idx_reference_src ON idx_reference (type, param, rid, target_type, target_id);

-- +goose Down
DROP INDEX idx_reference_src;
