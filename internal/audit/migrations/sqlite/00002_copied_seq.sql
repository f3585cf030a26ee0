-- +goose Up
-- The copy's progress is kept per chain (audit_chain.copied_seq) instead
-- of a flag per record: no row rewrite and no index entry per record.
ALTER TABLE audit_chain ADD COLUMN copied_seq INTEGER NOT NULL DEFAULT 0;
UPDATE audit_chain SET copied_seq = COALESCE(
    (SELECT MIN(r.seq) - 1 FROM audit_record r WHERE r.chain_id = audit_chain.chain_id AND r.materialized = 0),
    (SELECT MAX(r.seq) FROM audit_record r WHERE r.chain_id = audit_chain.chain_id),
    0);
DROP INDEX audit_record_pending;
DROP INDEX audit_record_resource;
ALTER TABLE audit_record DROP COLUMN materialized;

-- +goose Down
ALTER TABLE audit_record ADD COLUMN materialized INTEGER NOT NULL DEFAULT 0;
UPDATE audit_record SET materialized = 1 WHERE seq <= (SELECT c.copied_seq FROM audit_chain c WHERE c.chain_id = audit_record.chain_id);
CREATE INDEX audit_record_pending ON audit_record (recorded_at) WHERE materialized = 0;
CREATE INDEX audit_record_resource ON audit_record (resource_id);
ALTER TABLE audit_chain DROP COLUMN copied_seq;
