package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// Read and VRead, the hottest queries, skip pgx's query layer: each runs
// a statement prepared once per connection (pgx.Conn.Prepare under a fixed
// name is a map lookup after the first time) through pgconn with text
// parameters and binary results, and decodes the row by hand. That saves
// the argument encoding, the Describe of each execution and pgx's
// reflection-driven scanning; the body is copied once out of the read
// buffer.
//
// They run on the pool that serves their context (the requests', or
// background work's: database.Background), where a statement prepared
// under a name keeps PostgreSQL's generic plan after five executions
// (plan_cache_mode auto, database.Open): planning a lookup by unique index
// costs several times its execution. Searches on the same connections are
// planned with their values at every execution (unnamed statements, see
// querier).

// The columns Read does not already know: type and id are its arguments
// (COLLATE "C" compares bytes, so the stored values equal them).
const (
	readName  = "lapis_read"
	readSQL   = "SELECT version, last_updated, deleted, method, body FROM resources WHERE type = $1 AND id = $2"
	vreadName = "lapis_vread"
	vreadSQL  = "SELECT last_updated, deleted, method, body FROM history WHERE type = $1 AND id = $2 AND version = $3"
)

var binaryResults = []int16{1}

func (s *Store) rawRead(ctx context.Context, typ, id string) (*store.Resource, error) {
	r := &store.Resource{Type: typ, ID: id}
	err := s.queryOne(ctx, readName, readSQL, [][]byte{[]byte(typ), []byte(id)}, func(v [][]byte) error {
		if len(v) != 5 || len(v[0]) != 8 {
			return fmt.Errorf("postgres: read: unexpected row shape")
		}
		r.VersionID = int64(binary.BigEndian.Uint64(v[0]))
		return fill(r, v[1], v[2], v[3], v[4])
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Store) rawVRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	r := &store.Resource{Type: typ, ID: id, VersionID: version}
	var vb [20]byte
	err := s.queryOne(ctx, vreadName, vreadSQL, [][]byte{[]byte(typ), []byte(id), strconv.AppendInt(vb[:0], version, 10)}, func(v [][]byte) error {
		if len(v) != 4 {
			return fmt.Errorf("postgres: vread: unexpected row shape")
		}
		return fill(r, v[0], v[1], v[2], v[3])
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// fill decodes the binary last_updated (int8), deleted (bool), method
// (text) and body (bytea) columns.
func fill(r *store.Resource, lastUpdated, deleted, method, body []byte) error {
	if len(lastUpdated) != 8 || len(deleted) != 1 {
		return fmt.Errorf("postgres: read: unexpected column sizes")
	}
	r.LastUpdated = time.UnixMilli(int64(binary.BigEndian.Uint64(lastUpdated))).UTC()
	r.Deleted = deleted[0] != 0
	r.Method = string(method)
	if !r.Deleted {
		r.Body = append([]byte(nil), body...)
	}
	return nil
}

// queryOne runs the named statement on a pooled connection and hands its
// only row (values valid during the call) to scan; store.ErrNotFound when
// there is none.
func (s *Store) queryOne(ctx context.Context, name, sql string, params [][]byte, scan func([][]byte) error) error {
	c, err := s.pool(ctx).Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	sd, err := c.Conn().Prepare(ctx, name, sql)
	if err != nil {
		return mapErr(err)
	}
	rr := c.Conn().PgConn().ExecStatement(ctx, sd, params, nil, binaryResults)
	found := false
	var scanErr error
	for rr.NextRow() {
		if !found {
			found = true
			scanErr = scan(rr.Values())
		}
	}
	if _, err := rr.Close(); err != nil {
		return mapErr(err)
	}
	if scanErr != nil {
		return scanErr
	}
	if !found {
		return store.ErrNotFound
	}
	return nil
}
