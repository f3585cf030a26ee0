package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// TestSearchPoolCancelsOnTheServer: when the context of a query on the
// search pool ends, PostgreSQL stops running it (pgx sends a cancel
// request and drops the connection), so the search timeout frees the
// server's backend and its locks, not only the Go caller. The query holds
// an advisory lock while it sleeps for a minute; a second session can take
// the lock within its lock_timeout only if the server cancelled the query.
func TestSearchPoolCancelsOnTheServer(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rows, err := s.Pool().Query(ctx, "SELECT pg_advisory_xact_lock(4242), pg_sleep(60)")
	if err == nil {
		for rows.Next() {
		}
		rows.Close()
		err = rows.Err()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query past its deadline: %v, want the deadline", err)
	}
	conn, err := s.Pool().Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(context.Background(), "SET lock_timeout = '20s'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatalf("the cancelled query still holds its lock on the server: %v", err)
	}
	if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock(4242)"); err != nil {
		t.Fatal(err)
	}
	// The pool serves searches afterwards.
	if _, err := s.Search(context.Background(), &store.Query{Type: "Patient", Count: 1}); err != nil {
		t.Fatalf("search after a cancelled query: %v", err)
	}
}
