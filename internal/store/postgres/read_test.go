package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// Read and VRead go through pgconn with a per-connection prepared
// statement: cancellation, errors from the server and reuse of the
// connections afterwards.
func TestRawRead(t *testing.T) {
	s, err := postgres.Open(context.Background(), pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
