-- +goose Up
-- Bodies over about 2 kB (an AuditEvent of the audit copy, most clinical
-- resources) are compressed as they are stored and decompressed at every
-- read: lz4 does both at a fraction of the CPU of the default pglz, for
-- bytes that read back the same. New versions only: stored ones keep
-- their compression. A server built without lz4 keeps pglz (the
-- statements fail and are skipped).
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE 'ALTER TABLE resources ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE history ALTER COLUMN body SET COMPRESSION lz4';
-- Only a server without lz4 (feature_not_supported) is skipped: any
-- other failure (a lock not obtained, a missing table) fails the
-- migration rather than mark it applied with nothing changed.
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'resources.body and history.body keep the default compression: %', SQLERRM;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE 'ALTER TABLE resources ALTER COLUMN body SET COMPRESSION default';
    EXECUTE 'ALTER TABLE history ALTER COLUMN body SET COMPRESSION default';
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
-- +goose StatementEnd
