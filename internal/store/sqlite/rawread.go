package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// Read and VRead, the hottest queries, run on a small pool of read-only
// connections opened through the driver directly, outside database/sql,
// each with its two statements prepared once. Per read this saves
// database/sql's connection and statement bookkeeping, the goroutine that
// database/sql and the driver each start to watch a cancellable context,
// and the second copy of the body that Scan into a []byte makes.
//
// The statement runs under a context without cancellation: a lookup by
// primary key or unique index is a few page reads and is not worth
// interrupting. The caller's context is still honoured before the read
// starts, and while waiting for a connection.

// rawReadSQL selects what Read does not already know (type and id are the
// arguments; the unique index compares them with the BINARY collation, so
// the stored values are equal to them).
const rawReadSQL = "SELECT version, last_updated, deleted, method, body FROM resources WHERE type = ?1 AND id = ?2"

const rawVReadSQL = "SELECT last_updated, deleted, method, body FROM history WHERE type = ?1 AND id = ?2 AND version = ?3"

// errStoreClosed is returned by reads after Close.
var errStoreClosed = errors.New("sqlite: store is closed")

type rawConn struct {
	c     driver.Conn
	read  driver.StmtQueryContext
	vread driver.StmtQueryContext
	args  [3]driver.NamedValue
	dest  [5]driver.Value
}

// rawPool is a fixed set of rawConns handed out through a channel.
type rawPool struct {
	conns chan *rawConn
	n     int
	done  chan struct{}
}

func openRawPool(d driver.Driver, dsn string, n int) (*rawPool, error) {
	p := &rawPool{conns: make(chan *rawConn, n), done: make(chan struct{})}
	for i := 0; i < n; i++ {
		rc, err := openRawConn(d, dsn)
		if err != nil {
			p.close()
			return nil, err
		}
		p.n++
		p.conns <- rc
	}
	return p, nil
}

func openRawConn(d driver.Driver, dsn string) (*rawConn, error) {
	c, err := d.Open(dsn)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c}
	prep := func(q string) (driver.StmtQueryContext, error) {
		st, err := c.Prepare(q)
		if err != nil {
			return nil, err
		}
		sq, ok := st.(driver.StmtQueryContext)
		if !ok {
			st.Close()
			return nil, fmt.Errorf("sqlite: driver statement %T has no QueryContext", st)
		}
		return sq, nil
	}
	if rc.read, err = prep(rawReadSQL); err == nil {
		rc.vread, err = prep(rawVReadSQL)
	}
	if err != nil {
		rc.close()
		return nil, err
	}
	return rc, nil
}

func (rc *rawConn) close() error {
	var errs []error
	for _, st := range []driver.StmtQueryContext{rc.read, rc.vread} {
		if st != nil {
			errs = append(errs, st.(driver.Stmt).Close())
		}
	}
	return errors.Join(append(errs, rc.c.Close())...)
}

// get takes a connection, waiting for one while ctx allows.
func (p *rawPool) get(ctx context.Context) (*rawConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return nil, errStoreClosed
	default:
	}
	select {
	case rc := <-p.conns:
		return rc, nil
	default:
	}
	select {
	case rc := <-p.conns:
		return rc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, errStoreClosed
	}
}

func (p *rawPool) put(rc *rawConn) { p.conns <- rc }

// close waits for every connection to come back and closes it.
func (p *rawPool) close() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	close(p.done)
	var errs []error
	for i := 0; i < p.n; i++ {
		errs = append(errs, (<-p.conns).close())
	}
	return errors.Join(errs...)
}

// read runs rawReadSQL.
func (p *rawPool) read(ctx context.Context, typ, id string) (*store.Resource, error) {
	rc, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	defer p.put(rc)
	rc.args[0] = driver.NamedValue{Ordinal: 1, Value: typ}
	rc.args[1] = driver.NamedValue{Ordinal: 2, Value: id}
	r := &store.Resource{Type: typ, ID: id}
	err = rc.queryOne(rc.read, rc.args[:2], rc.dest[:5], func(d []driver.Value) error {
		var ms, del int64
		var ok bool
		if r.VersionID, ok = d[0].(int64); !ok {
			return fmt.Errorf("sqlite: read: version is %T", d[0])
		}
		if ms, ok = d[1].(int64); !ok {
			return fmt.Errorf("sqlite: read: last_updated is %T", d[1])
		}
		if del, ok = d[2].(int64); !ok {
			return fmt.Errorf("sqlite: read: deleted is %T", d[2])
		}
		return fill(r, ms, del, d[3], d[4])
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// vread runs rawVReadSQL.
func (p *rawPool) vread(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	rc, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	defer p.put(rc)
	rc.args[0] = driver.NamedValue{Ordinal: 1, Value: typ}
	rc.args[1] = driver.NamedValue{Ordinal: 2, Value: id}
	rc.args[2] = driver.NamedValue{Ordinal: 3, Value: version}
	r := &store.Resource{Type: typ, ID: id, VersionID: version}
	err = rc.queryOne(rc.vread, rc.args[:3], rc.dest[:4], func(d []driver.Value) error {
		ms, ok := d[0].(int64)
		if !ok {
			return fmt.Errorf("sqlite: vread: last_updated is %T", d[0])
		}
		del, ok := d[1].(int64)
		if !ok {
			return fmt.Errorf("sqlite: vread: deleted is %T", d[1])
		}
		return fill(r, ms, del, d[2], d[3])
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// fill sets the fields shared by read and vread. The driver hands over a
// freshly allocated copy of a BLOB, so the body is kept without copying.
func fill(r *store.Resource, ms, del int64, method, body driver.Value) error {
	r.LastUpdated = time.UnixMilli(ms).UTC()
	r.Deleted = del != 0
	switch m := method.(type) {
	case string:
		r.Method = m
	case []byte:
		r.Method = string(m)
	default:
		return fmt.Errorf("sqlite: read: method is %T", method)
	}
	if r.Deleted {
		return nil
	}
	switch b := body.(type) {
	case []byte:
		r.Body = b
	case string:
		r.Body = []byte(b)
	case nil:
	default:
		return fmt.Errorf("sqlite: read: body is %T", body)
	}
	return nil
}

// queryOne runs st and passes its only row to scan; store.ErrNotFound when
// there is none. The driver does not keep args or dest after it returns.
func (rc *rawConn) queryOne(st driver.StmtQueryContext, args []driver.NamedValue, dest []driver.Value, scan func([]driver.Value) error) error {
	rows, err := st.QueryContext(context.Background(), args)
	if err != nil {
		return err
	}
	err = rows.Next(dest)
	if err == nil {
		err = scan(dest)
	} else if err == io.EOF {
		err = store.ErrNotFound
	}
	clear(dest)
	clear(args)
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}
