package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/storetest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Read and VRead go through pgconn with a per-connection prepared
// statement: cancellation, errors from the server and reuse of the
// connections afterwards.
func TestRawRead(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	at := time.UnixMilli(1700000000123).UTC()
	for v := int64(1); v <= 2; v++ {
		w := &store.Write{Type: "Patient", ID: "p1", Version: v, LastUpdated: at.Add(time.Duration(v) * time.Millisecond), Method: "PUT", Body: []byte(`{"resourceType":"Patient","id":"p1"}`)}
		if v == 2 {
			w.Deleted, w.Body, w.Method = true, nil, "DELETE"
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) }); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Read(cctx, "Patient", "p1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "p\xff"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("invalid UTF-8 id: %v", err)
	}
	for i := 0; i < 50; i++ { // more reads than pooled connections
		r, err := s.Read(ctx, "Patient", "p1")
		if err != nil || !r.Deleted || r.VersionID != 2 || r.Body != nil || r.Method != "DELETE" || !r.LastUpdated.Equal(at.Add(2*time.Millisecond)) {
			t.Fatalf("read %d: %+v %v", i, r, err)
		}
		v, err := s.VRead(ctx, "Patient", "p1", 1)
		if err != nil || v.Deleted || string(v.Body) != `{"resourceType":"Patient","id":"p1"}` || v.Method != "PUT" || v.LastUpdated.Location() != time.UTC {
			t.Fatalf("vread %d: %+v %v", i, v, err)
		}
	}
	if _, err := s.VRead(ctx, "Patient", "p1", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "p2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

// One pool serves reads and searches: Read keeps its prepared statement,
// whose generic plan PostgreSQL adopts after five executions
// (plan_cache_mode auto); searches whose SQL fixes their plan (a driving
// clause: sqlgen.Pinner) run as prepared statements with the generic plan,
// and the others leave no prepared statement behind (unnamed statements,
// planned with their values every time).
func TestPlanModes(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.New(t)+"&pool_max_conns=2")
	s = storetest.Opened(t, s, err)
	storetest.PutPatient(t, s, "p1", "female")
	// statements lists the prepared statements of every pooled connection
	// with their generic plan counts.
	statements := func() map[string]int64 {
		out := map[string]int64{}
		var held []*pgxpool.Conn
		defer func() {
			for _, c := range held {
				c.Release()
			}
		}()
		for range s.Pool().Config().MaxConns {
			c, err := s.Pool().Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
			rows, err := c.Query(ctx, "SELECT name, statement, generic_plans FROM pg_prepared_statements")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var name, stmt string
				var generic int64
				if err := rows.Scan(&name, &stmt, &generic); err != nil {
					t.Fatal(err)
				}
				if name == "lapis_read" {
					stmt = name
				}
				out[stmt] += generic
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	for range 20 {
		if _, err := s.Read(ctx, "Patient", "p1"); err != nil {
			t.Fatal(err)
		}
	}
	before := statements()
	if before["lapis_read"] == 0 {
		t.Errorf("read by id: no generic plan after 20 reads on 2 connections: %v", before)
	}
	for i := range 20 {
		// A driving clause (pinned), and none (planned with its values).
		q := &store.Query{Type: "Patient", Count: 10, Where: []store.Clause{{Any: []store.Predicate{{Param: "gender", Token: &store.TokenMatch{Code: []string{"female", "male"}[i%2]}}}}}}
		if i%4 >= 2 {
			q = &store.Query{Type: "Patient", Count: 10}
		}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 && len(res.Matches) != 1 {
			t.Fatalf("search: %d matches", len(res.Matches))
		}
	}
	after := statements()
	pinned := 0
	for stmt, generic := range after {
		if _, ok := before[stmt]; ok || strings.HasPrefix(stmt, "SELECT set_config(") {
			continue
		}
		if generic == 0 {
			t.Errorf("a search left a prepared statement planned with its values: %s", stmt)
		}
		if strings.Contains(stmt, "idx_token") {
			pinned++
		}
	}
	if pinned == 0 {
		t.Errorf("the search with a driving clause kept no generic plan: %v", after)
	}
}
