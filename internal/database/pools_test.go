package database_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestBackgroundConns checks, on PostgreSQL, that background work cannot
// take the connections requests need: with every connection background
// work can get held (through the pgx pool and the database/sql view
// alike), a request still gets a connection, through either, and all of
// the requests' share; together they are the URL's pool_max_conns.
func TestBackgroundConns(t *testing.T) {
	ctx := context.Background()
	h, err := database.Open(ctx, database.Options{URL: pgtest.New(t) + "&pool_max_conns=8"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// Background work takes every connection it can: the first through
	// database/sql, the others through its pool, until that pool is full.
	bg := database.Background(ctx)
	held := 0
	sc, err := h.Writer.Conn(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	held++
	var conns []*pgxpool.Conn
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	bp := h.PoolFor(bg)
	for bp.Stat().AcquiredConns() < bp.Stat().MaxConns() {
		c, err := bp.Acquire(bg)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		held++
	}
	if held > 2 {
		t.Errorf("background work holds %d connections, want at most 2", held)
	}

	// Requests still get connections: one through database/sql, then
	// every one of their pool. The deadline only keeps a broken split from
	// hanging the test.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var one int
	if err := h.Writer.QueryRowContext(rctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a request got no connection while background work held %d: %v", held, err)
	}
	if h.PoolFor(rctx) != h.Pool {
		t.Fatal("a request's context is not served by the requests' pool")
	}
	for i := range h.Pool.Config().MaxConns {
		c, err := h.Pool.Acquire(rctx)
		if err != nil {
			t.Fatalf("request connection %d: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	if total := int(h.Pool.Config().MaxConns) + held; total != 8 {
		t.Errorf("%d connections in all, want pool_max_conns 8", total)
	}
	var backends int
	if err := conns[len(conns)-1].QueryRow(rctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").Scan(&backends); err != nil {
		t.Fatal(err)
	}
	if backends != 8 {
		t.Errorf("%d backends on the database, want pool_max_conns 8", backends)
	}
}

// TestSplitConns checks the sizes of the pools: pool_max_conns in all,
// background work's share 2 from 8 on, 1 from 4, none below (then it
// shares the requests' pool); without pool_max_conns, 2 beside the
// default.
func TestSplitConns(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	for _, c := range []struct {
		param            string
		requests, shared int32
	}{{"&pool_max_conns=2", 2, 0}, {"&pool_max_conns=5", 4, 1}, {"&pool_max_conns=12", 10, 2}} {
		h, err := database.Open(ctx, database.Options{URL: url + c.param})
		if err != nil {
			t.Fatal(err)
		}
		r, b := h.Pool.Config().MaxConns, h.BackgroundPool.Config().MaxConns
		if c.shared == 0 {
			if h.BackgroundPool != h.Pool || r != c.requests {
				t.Errorf("%s: requests %d, background %d, want one pool of %d", c.param, r, b, c.requests)
			}
		} else if r != c.requests || b != c.shared {
			t.Errorf("%s: requests %d, background %d, want %d and %d", c.param, r, b, c.requests, c.shared)
		}
		h.Close()
	}
	h, err := database.Open(ctx, database.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if r, b := h.Pool.Config().MaxConns, h.BackgroundPool.Config().MaxConns; r < 8 || b != 2 {
		t.Errorf("default: requests %d, background %d", r, b)
	}
	if h.PoolFor(database.Background(ctx)) != h.BackgroundPool || h.PoolFor(ctx) != h.Pool {
		t.Error("PoolFor")
	}
}
