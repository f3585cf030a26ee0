package database

import (
	"sync"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqlitePageSlots is the number of page buffers of the process's SQLite
// page cache memory (SQLITE_CONFIG_PAGECACHE), shared by every
// connection: 8,192 slots of a 16 KiB page and its header, 136 MB of
// address space that becomes resident as it is used (under lapis-bench's
// real-path load the server's peak RSS rose from 322 to 336 MB; 4,096
// slots were exhausted by the connections' caches, and the searches
// spent 15–30 % more CPU).
//
// Without it every cached page is an allocation of its own, and a 16 KiB
// page with its header is larger than the largest slot of the C memory
// allocator (modernc.org/memory): each one is a 64 KiB mapping, and once
// more than 4 MiB of them are free the allocator hands each further one
// back to the kernel (madvise), to fault it in again on reuse. A reader
// connection empties its page cache whenever another commit changed the
// database (in WAL mode; the audit trail commits several times a second),
// so a serving process freed and re-mapped its cached pages all the time:
// 10–15 % of the CPU of a patient's system _history, 5 % of a read by id.
// Slots from this buffer go back to a free list instead. Pages beyond it
// are allocated as before.
const sqlitePageSlots = 8192

// sqlitePageCacheConfigured reports whether configureSQLitePageCache
// installed the slots (for tests).
var sqlitePageCacheConfigured bool

// sqlitePageCacheOnce makes the slots at the first OpenSQLite of the
// process, not at start: a process that never opens SQLite (PostgreSQL
// only) reserves no address space for them.
var sqlitePageCacheOnce sync.Once

// ensureSQLitePageCache installs the slots once, before the process's
// first SQLite connection (OpenSQLite calls it first).
func ensureSQLitePageCache() {
	sqlitePageCacheOnce.Do(func() { sqlitePageCacheConfigured = configureSQLitePageCache() })
}

// pcacheHeader receives the header size of a page slot from SQLite
// (SQLITE_CONFIG_PCACHE_HDRSZ): a package variable, since its address goes
// to SQLite as a number and a package variable never moves.
var pcacheHeader int32

// configureSQLitePageCache gives SQLite sqlitePageSlots page buffers
// (SQLITE_CONFIG_PAGECACHE). It must run before the process opens its
// first SQLite connection (SQLite refuses configuration after it
// initialises, and then keeps its default: the call is harmless).
func configureSQLitePageCache() bool {
	tls := libc.NewTLS()
	defer tls.Close()
	va := libc.NewVaList(uintptr(unsafe.Pointer(&pcacheHeader)))
	rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PCACHE_HDRSZ, va)
	libc.Xfree(tls, va)
	if rc != sqlite3.SQLITE_OK {
		return false
	}
	size := (SQLitePageSize + int(pcacheHeader) + 7) &^ 7
	buf := libc.Xmalloc(tls, types.Size_t(size*sqlitePageSlots))
	if buf == 0 {
		return false
	}
	va = libc.NewVaList(buf, int32(size), int32(sqlitePageSlots))
	rc = sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PAGECACHE, va)
	libc.Xfree(tls, va)
	if rc != sqlite3.SQLITE_OK {
		libc.Xfree(tls, buf)
		return false
	}
	return true
}
