-- +goose Up
-- PostgreSQL's 00005 sets the compression of audit_record.body; SQLite
-- does not compress. This keeps the two dialects' versions in step.
SELECT 1;

-- +goose Down
SELECT 1;
