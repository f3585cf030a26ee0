-- +goose Up
-- A record's body (about 2.2 kB of JSON for a read) makes its row larger
-- than PostgreSQL's TOAST threshold, so every record is compressed as it
-- is stored: with the default pglz that is a sizeable part of the
-- database's CPU per audited request. lz4 compresses such bodies at a
-- fraction of the cost (and decompresses faster for verify and export);
-- the bytes read back are the same, so hashes and verification are
-- unchanged. New records only: stored ones keep their compression. A
-- server built without lz4 keeps pglz (the statement fails and is
-- skipped).
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE 'ALTER TABLE audit_record ALTER COLUMN body SET COMPRESSION lz4';
-- Only a server without lz4 (feature_not_supported) is skipped: any
-- other failure (a lock not obtained, a missing table) fails the
-- migration rather than mark it applied with nothing changed.
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'audit_record.body keeps the default compression: %', SQLERRM;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE 'ALTER TABLE audit_record ALTER COLUMN body SET COMPRESSION default';
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
-- +goose StatementEnd
