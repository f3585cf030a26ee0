-- +goose Up
-- Records of format 2 carry the chain's copy watermark when they were
-- written (every record up to that seq was then stored as an AuditEvent
-- resource). The hash covers it, so rolling back audit_chain.copied_seq
-- cannot make deleted AuditEvents look "not yet copied". NULL: format 1.
ALTER TABLE audit_record ADD COLUMN watermark INTEGER;

-- +goose Down
ALTER TABLE audit_record DROP COLUMN watermark;
