package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lapis-health/lapis/internal/database"
)

// snapshotTable is where paging snapshots live on SQLite: in the scratch
// file (database.SQLiteScratch), so that storing them, during searches,
// does not commit to the main file.
const snapshotTable = database.SQLiteScratch + ".search_snapshot"

// scratchSchema is the store's schema in the scratch file. The scratch
// file holds a cache (paging snapshots live minutes), not data: it is
// created when missing, and a later release that changes a table gives it
// a new name instead of migrating what is cached (goose's versions stay
// with the main file's data).
const scratchSchema = `CREATE TABLE IF NOT EXISTS ` + snapshotTable + ` (
    id        TEXT    PRIMARY KEY,
    created   INTEGER NOT NULL,
    total     INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    query     BLOB,
    rids      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS ` + database.SQLiteScratch + `.search_snapshot_created ON search_snapshot (created);`

// migrateScratch creates the store's tables in the scratch file when
// missing, through db (a connection with the scratch file attached
// writable). Processes starting at once serialise on the scratch file's
// write lock; the later one finds the tables there.
func migrateScratch(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, scratchSchema); err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	return nil
}
