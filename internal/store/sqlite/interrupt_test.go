package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// slowAfterFirstRow returns its first row at once and its second only
// after some ten million steps (seconds): the shape of a search whose first
// match comes early and whose others are sparse.
const slowAfterFirstRow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c WHERE x = 1 OR x % 10000000 = 0 LIMIT 2"

// TestReadQueryStopsWithItsContext: a search or history query ends when
// its context does, however far its rows are apart. The driver interrupts
// a statement only while it computes the first row, so the store computes
// every row before the first (eager); without that, the statement below
// ran for seconds past its deadline to return its second row.
func TestReadQueryStopsWithItsContext(t *testing.T) {
	s := openRaw(t, 2)
	// A connection opened beforehand: the deadline is the query's, not
	// the connection setup's (which, on a loaded machine, can take it all).
	conn, err := s.r.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	n := 0
	rows, err := readQuerier{tx, s.stmts}.Query(ctx, slowAfterFirstRow)
	if err == nil {
		for rows.Next() {
			n++
		}
		err = rows.Err()
		rows.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) || n > 1 {
		t.Fatalf("after its deadline the query returned %d rows and err %v, want at most the first row and the deadline", n, err)
	}
	// The pool is still usable (the interrupted connection is discarded).
	tx.Rollback()
	conn.Close()
	if _, err := s.Search(context.Background(), &store.Query{Type: "Patient", Count: 1}); err != nil {
		t.Fatalf("search after an interrupted query: %v", err)
	}
}

// TestEagerKeepsOrder: a query read eagerly returns its rows in the order
// of its ORDER BY.
func TestEagerKeepsOrder(t *testing.T) {
	s := openRaw(t, 2)
	tx, err := s.r.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, c := range []struct {
		query string
		want  []int64
	}{
		{"SELECT value FROM json_each('[3,1,4,1,5,9,2,6]') ORDER BY value DESC LIMIT 5", []int64{9, 6, 5, 4, 3}},
		{"SELECT value FROM json_each('[3,1,4,1,5,9,2,6]') ORDER BY value % 3, value DESC LIMIT 8", []int64{9, 6, 3, 4, 1, 1, 5, 2}},
	} {
		rows, err := readQuerier{tx, s.stmts}.Query(context.Background(), c.query)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		rows.Close()
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
	}
}
