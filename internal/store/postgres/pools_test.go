package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/storetest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestPoolsByContext checks that the store runs each call on the pool of
// its context: with every background connection held, requests read,
// search and write; with every request connection held, background work
// (the audit trail's copy, a context of database.Background) writes and
// reads. The deadline only keeps a store that ignores the context from
// hanging the test.
func TestPoolsByContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := database.Open(ctx, database.Options{URL: pgtest.New(t) + "&pool_max_conns=8"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // after the store's Close
	s, err := postgres.New(ctx, h, postgres.Options{})
	s = storetest.Opened(t, s, err)
	storetest.PutPatient(t, s, "p0", "female")

	// hold takes every connection of p until released.
	hold := func(p *pgxpool.Pool) (release func()) {
		var held []*pgxpool.Conn
		for p.Stat().AcquiredConns() < p.Stat().MaxConns() {
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		var once sync.Once
		release = func() {
			once.Do(func() {
				for _, c := range held {
					c.Release()
				}
			})
		}
		t.Cleanup(release) // before the store's Close, which waits for its background work
		return release
	}
	work := func(ctx context.Context, id string) {
		t.Helper()
		w := &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: time.UnixMilli(1700000000123).UTC(), Method: "PUT",
			Body: []byte(`{"resourceType":"Patient","id":"` + id + `"}`), Index: store.Index{Tokens: []store.TokenRow{{Param: "gender", Code: "male"}}}}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) }); err != nil {
			t.Fatalf("write %s: %v", id, err)
		}
		if _, err := s.Read(ctx, "Patient", id); err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		res, err := s.Search(ctx, &store.Query{Type: "Patient", Count: 10})
		if err != nil || len(res.Matches) == 0 {
			t.Fatalf("search: %v", err)
		}
	}

	release := hold(h.BackgroundPool)
	work(ctx, "request")
	release()

	release = hold(h.Pool)
	work(database.Background(ctx), "background")
	release()
}
