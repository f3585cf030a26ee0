package database

import (
	"context"
	"fmt"
	"testing"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// pageCacheUsed receives sqlite3_status's current and highest values (a
// package variable: its address goes to SQLite as a number).
var pageCacheUsed [2]int32

// pageCacheStatus returns SQLite's SQLITE_STATUS_PAGECACHE_USED: the
// current and highest number of page slots in use.
func pageCacheStatus(t *testing.T) (cur, high int32) {
	t.Helper()
	tls := libc.NewTLS()
	defer tls.Close()
	if rc := sqlite3.Xsqlite3_status(tls, sqlite3.SQLITE_STATUS_PAGECACHE_USED,
		uintptr(unsafe.Pointer(&pageCacheUsed[0])), uintptr(unsafe.Pointer(&pageCacheUsed[1])), 0); rc != sqlite3.SQLITE_OK {
		t.Fatalf("sqlite3_status: %d", rc)
	}
	return pageCacheUsed[0], pageCacheUsed[1]
}

// TestSQLitePageCacheSlots: the process's SQLite connections take their
// cached pages from the configured slots (and a reader whose cache a
// commit emptied takes them again from there), not an allocation each.
func TestSQLitePageCacheSlots(t *testing.T) {
	ctx := context.Background()
	h, err := Open(ctx, Options{DataDir: t.TempDir(), SQLiteReaders: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !sqlitePageCacheConfigured {
		t.Fatal("SQLITE_CONFIG_PAGECACHE was not installed")
	}
	if _, err := h.Writer.ExecContext(ctx, "CREATE TABLE slots_t (k INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := h.Writer.ExecContext(ctx, "INSERT INTO slots_t (v) VALUES (?)", fmt.Sprintf("%0500d", i)); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := h.Reader.QueryRowContext(ctx, "SELECT count(*) FROM slots_t").Scan(&n); err != nil || n != i+1 {
			t.Fatalf("count %d: %v", n, err)
		}
	}
	if cur, high := pageCacheStatus(t); cur <= 0 || high < cur || high > sqlitePageSlots {
		t.Errorf("page cache slots in use %d, at most %d (of %d)", cur, high, sqlitePageSlots)
	}
}
