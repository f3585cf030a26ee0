package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// createSQL inserts a new resource (version 1) and its history row; no row
// comes back when the resource already exists (or a concurrent transaction
// created it first).
const createSQL = `WITH ins AS (
	INSERT INTO resources (type, id, version, last_updated, deleted, method, idx_mask, body)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
	ON CONFLICT (type, id) DO NOTHING
	RETURNING rid
), h AS (
	INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body)
	SELECT rid, $1, $2, $3, $4, $5, $6, $8 FROM ins
)
SELECT rid FROM ins`

// updateSQL replaces the current version $9 with version $3, appends the
// history row, keeps the access rows of version $9 (sqlgen.KeepSQL: the
// sub-statements share one snapshot, so they read the index rows before
// their deletion) and drops the old index rows; no row comes back when the
// current version is not $9.
var updateSQL = func() string {
	s := `WITH up AS (
	UPDATE resources SET version = $3, last_updated = $4, deleted = $5, method = $6, idx_mask = $7, body = $8
	WHERE type = $1 AND id = $2 AND version = $9
	RETURNING rid
), h AS (
	INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body)
	SELECT rid, $1, $2, $3, $4, $5, $6, $8 FROM up
), kt AS (
	` + sqlgen.KeepSQL(sqlgen.Postgres, sqlgen.TableToken, "$1", "$2", "$9", "IN (SELECT rid FROM up)") + `
), kr AS (
	` + sqlgen.KeepSQL(sqlgen.Postgres, sqlgen.TableReference, "$1", "$2", "$9", "IN (SELECT rid FROM up)") + `
)`
	for i, t := range sqlgen.IndexTables {
		s += ", d" + string(rune('0'+i)) + " AS (DELETE FROM " + t + " WHERE rid IN (SELECT rid FROM up))"
	}
	return s + "\nSELECT rid FROM up"
}()

// Index row inserts from parallel arrays.
const (
	insString    = `INSERT INTO idx_string (rid, type, param, grp, norm, exact) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[])`
	insToken     = `INSERT INTO idx_token (rid, type, param, grp, system, code, text) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[])`
	insReference = `INSERT INTO idx_reference (rid, type, param, grp, target_type, target_id, url) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[])`
	insDate      = `INSERT INTO idx_date (rid, type, param, grp, lo, hi) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[])`
	insNumber    = `INSERT INTO idx_number (rid, type, param, grp, lo, hi) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::float8[], $6::float8[])`
	insQuantity  = `INSERT INTO idx_quantity (rid, type, param, grp, system, code, unit, lo, hi) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::float8[])`
	insURI       = `INSERT INTO idx_uri (rid, type, param, grp, uri) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[])`
)

// pending is an index row waiting to be sent, with its resource's rid and type.
type pending[R any] struct {
	rid int64
	typ string
	row R
}

// buffer holds the index rows of the Puts not yet sent.
type buffer struct {
	strings    []pending[store.StringRow]
	tokens     []pending[store.TokenRow]
	references []pending[store.ReferenceRow]
	dates      []pending[store.DateRow]
	numbers    []pending[store.NumberRow]
	quantities []pending[store.QuantityRow]
	uris       []pending[store.URIRow]
	rids       map[int64]bool
	// keys are the "type/id" of the resources in rids.
	keys map[string]bool
}

func (b *buffer) len() int {
	return len(b.strings) + len(b.tokens) + len(b.references) + len(b.dates) + len(b.numbers) + len(b.quantities) + len(b.uris)
}

func add[R any](dst *[]pending[R], rid int64, typ string, rows []R) {
	for _, r := range rows {
		*dst = append(*dst, pending[R]{rid, typ, r})
	}
}

func drop[R any](dst *[]pending[R], rid int64) {
	out := (*dst)[:0]
	for _, p := range *dst {
		if p.rid != rid {
			out = append(out, p)
		}
	}
	*dst = out
}

// tx is a store.Tx on a pgx transaction.
type tx struct {
	s    *Store
	tx   pgx.Tx
	buf  buffer
	puts int64 // resource versions and index sets written (statistics schedule)
}

// conditionalLock is the advisory lock (classid, objid: a key space of
// its own, apart from the single-key locks of migrations) of the
// transactions that may create what a conditional interaction searched
// for.
const conditionalLockClass, conditionalLockID = 0x4c415053, 1 // "LAPS"

// LockConditional takes the transaction-level conditional-write lock, so
// that the transactions whose conditional creates and updates may create
// what their criteria search for take turns: under READ COMMITTED the
// search of the one that waited sees what the other created once it
// committed. One lock for all criteria: a transaction takes it at most
// once, before any row lock, so these locks cannot deadlock, and the
// lock table does not grow with a Bundle's entries.
func (t *tx) LockConditional(ctx context.Context) error {
	_, err := t.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", int32(conditionalLockClass), int32(conditionalLockID))
	return mapErr(err)
}

// Read returns the current version, locked FOR UPDATE.
func (t *tx) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	return t.s.eng.Read(ctx, querier{t.tx}, typ, id, true)
}

// Search sends the buffered index rows and runs a search in the transaction.
func (t *tx) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	if err := t.flush(ctx); err != nil {
		return nil, mapErr(err)
	}
	qr := querier{t.tx}
	return t.s.eng.Search(ctx, qr, qr, q)
}

// Put stores a new version in one round trip and buffers its index rows.
func (t *tx) Put(ctx context.Context, w *store.Write) error {
	t.puts++
	if w.Version < 1 {
		return store.ErrConflict
	}
	ix := &w.Index
	if w.Deleted {
		ix = &store.Index{}
	}
	body := w.Body
	if w.Deleted || body == nil {
		body = []byte{}
	}
	ms := w.LastUpdated.UnixMilli()
	mask := sqlgen.Mask(ix)
	var rid int64
	var err error
	if w.Version == 1 {
		err = t.tx.QueryRow(ctx, createSQL, w.Type, w.ID, w.Version, ms, w.Deleted, w.Method, mask, body).Scan(&rid)
	} else {
		if t.buf.keys[w.Type+"/"+w.ID] {
			// The version superseded here was written in this transaction:
			// its index rows must be in the table to be kept.
			if err := t.flush(ctx); err != nil {
				return mapErr(err)
			}
		}
		err = t.tx.QueryRow(ctx, updateSQL, w.Type, w.ID, w.Version, ms, w.Deleted, w.Method, mask, body, w.Version-1).Scan(&rid)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrConflict
	}
	if err != nil {
		return mapErr(err)
	}
	t.buffer(rid, w.Type, w.ID, mask, ix)
	return nil
}

// PutNew stores new resources (store.Creator): their inserts are sent
// together in one pipelined batch, one round trip for all of them.
func (t *tx) PutNew(ctx context.Context, ws []*store.Write) error {
	batch := &pgx.Batch{}
	for _, w := range ws {
		if w.Version != 1 || w.Deleted {
			return fmt.Errorf("postgres: PutNew of %s/%s: not a new resource (version %d)", w.Type, w.ID, w.Version)
		}
		body := w.Body
		if body == nil {
			body = []byte{}
		}
		batch.Queue(createSQL, w.Type, w.ID, w.Version, w.LastUpdated.UnixMilli(), false, w.Method, sqlgen.Mask(&w.Index), body)
	}
	br := t.tx.SendBatch(ctx, batch)
	for _, w := range ws {
		t.puts++
		var rid int64
		err := br.QueryRow().Scan(&rid)
		if errors.Is(err, pgx.ErrNoRows) {
			br.Close()
			return store.ErrConflict
		}
		if err != nil {
			br.Close()
			return mapErr(err)
		}
		t.buffer(rid, w.Type, w.ID, sqlgen.Mask(&w.Index), &w.Index)
	}
	return mapErr(br.Close())
}

// columns gathers the common columns of buffered rows.
func columns[R any](ps []pending[R]) (rids []int64, types []string) {
	rids = make([]int64, len(ps))
	types = make([]string, len(ps))
	for i, p := range ps {
		rids[i], types[i] = p.rid, p.typ
	}
	return
}

// flush sends the buffered index rows in one batch.
func (t *tx) flush(ctx context.Context) error {
	b := &t.buf
	if b.len() == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	if ps := b.strings; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, norm, exact := make([]string, len(ps)), make([]int32, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		for i, p := range ps {
			param[i], grp[i], norm[i], exact[i] = p.row.Param, p.row.Group, p.row.Norm, p.row.Exact
		}
		batch.Queue(insString, rid, typ, param, grp, norm, exact)
	}
	if ps := b.tokens; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, sys, code, text := make([]string, len(ps)), make([]int32, len(ps)), make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		for i, p := range ps {
			param[i], grp[i], sys[i], code[i], text[i] = p.row.Param, p.row.Group, p.row.System, p.row.Code, p.row.Text
		}
		batch.Queue(insToken, rid, typ, param, grp, sys, code, text)
	}
	if ps := b.references; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, tt, tid, u := make([]string, len(ps)), make([]int32, len(ps)), make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		for i, p := range ps {
			param[i], grp[i], tt[i], tid[i], u[i] = p.row.Param, p.row.Group, p.row.TargetType, p.row.TargetID, p.row.URL
		}
		batch.Queue(insReference, rid, typ, param, grp, tt, tid, u)
	}
	if ps := b.dates; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, lo, hi := make([]string, len(ps)), make([]int32, len(ps)), make([]int64, len(ps)), make([]int64, len(ps))
		for i, p := range ps {
			param[i], grp[i], lo[i], hi[i] = p.row.Param, p.row.Group, p.row.Lo, p.row.Hi
		}
		batch.Queue(insDate, rid, typ, param, grp, lo, hi)
	}
	if ps := b.numbers; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, lo, hi := make([]string, len(ps)), make([]int32, len(ps)), make([]float64, len(ps)), make([]float64, len(ps))
		for i, p := range ps {
			param[i], grp[i], lo[i], hi[i] = p.row.Param, p.row.Group, p.row.Lo, p.row.Hi
		}
		batch.Queue(insNumber, rid, typ, param, grp, lo, hi)
	}
	if ps := b.quantities; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, sys, code, unit := make([]string, len(ps)), make([]int32, len(ps)), make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		lo, hi := make([]float64, len(ps)), make([]float64, len(ps))
		for i, p := range ps {
			param[i], grp[i], sys[i], code[i], unit[i], lo[i], hi[i] = p.row.Param, p.row.Group, p.row.System, p.row.Code, p.row.Unit, p.row.Lo, p.row.Hi
		}
		batch.Queue(insQuantity, rid, typ, param, grp, sys, code, unit, lo, hi)
	}
	if ps := b.uris; len(ps) > 0 {
		rid, typ := columns(ps)
		param, grp, u := make([]string, len(ps)), make([]int32, len(ps)), make([]string, len(ps))
		for i, p := range ps {
			param[i], grp[i], u[i] = p.row.Param, p.row.Group, p.row.URI
		}
		batch.Queue(insURI, rid, typ, param, grp, u)
	}
	if err := t.tx.SendBatch(ctx, batch).Close(); err != nil {
		return err
	}
	t.buf = buffer{}
	return nil
}

// buffer queues the index rows of rid (replacing rows queued earlier in
// this transaction) for the next flush.
func (t *tx) buffer(rid int64, typ, id string, mask int64, ix *store.Index) {
	b := &t.buf
	if b.rids[rid] {
		drop(&b.strings, rid)
		drop(&b.tokens, rid)
		drop(&b.references, rid)
		drop(&b.dates, rid)
		drop(&b.numbers, rid)
		drop(&b.quantities, rid)
		drop(&b.uris, rid)
	}
	if mask == 0 {
		return
	}
	if b.rids == nil {
		b.rids = make(map[int64]bool)
		b.keys = make(map[string]bool)
	}
	b.rids[rid] = true
	b.keys[typ+"/"+id] = true
	add(&b.strings, rid, typ, ix.Strings)
	add(&b.tokens, rid, typ, ix.Tokens)
	add(&b.references, rid, typ, ix.References)
	add(&b.dates, rid, typ, ix.Dates)
	add(&b.numbers, rid, typ, ix.Numbers)
	add(&b.quantities, rid, typ, ix.Quantities)
	add(&b.uris, rid, typ, ix.URIs)
}

// reindexSQL sets the index mask of a live resource and drops its index
// rows; no row comes back when it does not exist or is deleted.
var reindexSQL = func() string {
	s := `WITH up AS (
	UPDATE resources SET idx_mask = $3 WHERE type = $1 AND id = $2 AND NOT deleted
	RETURNING rid
)`
	for i, t := range sqlgen.IndexTables {
		s += ", d" + string(rune('0'+i)) + " AS (DELETE FROM " + t + " WHERE rid IN (SELECT rid FROM up))"
	}
	return s + "\nSELECT rid FROM up"
}()

// PutIndex replaces the index rows of the current version (store.IndexWriter).
func (t *tx) PutIndex(ctx context.Context, typ, id string, ix *store.Index) error {
	t.puts++
	mask := sqlgen.Mask(ix)
	var rid int64
	err := t.tx.QueryRow(ctx, reindexSQL, typ, id, mask).Scan(&rid)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return mapErr(err)
	}
	t.buffer(rid, typ, id, mask, ix)
	return nil
}

// PutVersionIndex replaces the access rows kept for a superseded version
// (store.VersionIndexWriter).
func (t *tx) PutVersionIndex(ctx context.Context, typ, id string, version int64, ix *store.Index) error {
	var seq, cur int64
	var deleted bool
	err := t.tx.QueryRow(ctx, sqlgen.VersionSQL(sqlgen.Postgres), typ, id, version).Scan(&seq, &deleted, &cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return mapErr(err)
	}
	if deleted || version == cur {
		return nil
	}
	tokens, refs := sqlgen.KeptRows(ix)
	batch := &pgx.Batch{}
	batch.Queue("DELETE FROM "+sqlgen.TableHistoryToken+" WHERE seq = $1", seq)
	batch.Queue("DELETE FROM "+sqlgen.TableHistoryReference+" WHERE seq = $1", seq)
	if len(tokens) > 0 {
		param, code, sys := make([]string, len(tokens)), make([]string, len(tokens)), make([]string, len(tokens))
		for i, r := range tokens {
			param[i], code[i], sys[i] = r.Param, r.Code, r.System
		}
		batch.Queue("INSERT INTO "+sqlgen.TableHistoryToken+" (seq, param, code, system) SELECT $1::bigint, * FROM unnest($2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
			seq, param, code, sys)
	}
	if len(refs) > 0 {
		param, tid, tt := make([]string, len(refs)), make([]string, len(refs)), make([]string, len(refs))
		for i, r := range refs {
			param[i], tid[i], tt[i] = r.Param, r.TargetID, r.TargetType
		}
		batch.Queue("INSERT INTO "+sqlgen.TableHistoryReference+" (seq, param, target_id, target_type) SELECT $1::bigint, * FROM unnest($2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
			seq, param, tid, tt)
	}
	return mapErr(t.tx.SendBatch(ctx, batch).Close())
}
