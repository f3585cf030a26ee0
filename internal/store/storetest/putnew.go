package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// testPutNew: new resources stored in one pipelined batch are readable,
// in history (in the order written) and searchable by their index rows,
// and later updated like any other; one that exists already, or comes
// twice, makes the batch fail with ErrConflict and rolls back all of it;
// a write that is not a creation is refused.
func testPutNew(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Now()
	mk := func(id, code string) *store.Write {
		return &store.Write{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: at, Method: "POST",
			Body: []byte(`{"resourceType":"AuditEvent","id":"` + id + `"}`),
			Index: store.Index{Tokens: []store.TokenRow{{Param: "action", System: "s", Code: code}},
				Strings: []store.StringRow{{Param: "address", Norm: id, Exact: id}}}}
	}
	put := func(ws ...*store.Write) error {
		return s.Update(ctx, func(tx store.Tx) error {
			c, ok := tx.(store.Creator)
			if !ok {
				t.Skip("the store's transactions are not a store.Creator")
			}
			return c.PutNew(ctx, ws)
		})
	}
	if err := put(mk("a1", "R"), mk("a2", "R"), mk("a3", "C")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		if r, err := s.Read(ctx, "AuditEvent", id); err != nil || r.VersionID != 1 {
			t.Fatalf("read %s: %v %v", id, r, err)
		}
	}
	search := func(code string) int {
		t.Helper()
		res, err := s.Search(ctx, &store.Query{Type: "AuditEvent", Count: 10, Where: []store.Clause{{Any: []store.Predicate{{Param: "action", Token: &store.TokenMatch{Code: code}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Matches)
	}
	if n := search("R"); n != 2 {
		t.Fatalf("action=R: %d matches, want 2", n)
	}
	eq(t, "address=a3", find(t, s, "AuditEvent", one(store.Predicate{Param: "address", String: &store.StringMatch{Value: "a3"}})), []string{"a3"})
	h, err := s.History(ctx, store.HistoryQuery{Type: "AuditEvent"})
	if err != nil || len(h.Versions) != 3 {
		t.Fatalf("history: %v %v", h, err)
	}
	// Newest first: the batch's versions in the order written.
	var hist []string
	for _, v := range h.Versions {
		hist = append(hist, v.ID)
	}
	eq(t, "history of the batch", hist, []string{"a3", "a2", "a1"})
	// A refused batch stores nothing, not even its other resources.
	for _, c := range []struct {
		what, id, action string
		batch            []*store.Write
	}{
		{"one resource twice in the batch", "c1", "D", []*store.Write{mk("c1", "D"), mk("c1", "D")}},
		{"an existing resource (a2) in the batch", "b1", "U", []*store.Write{mk("b1", "U"), mk("a2", "U")}},
	} {
		if err := put(c.batch...); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: %v, want ErrConflict", c.what, err)
		}
		if _, err := s.Read(ctx, "AuditEvent", c.id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: %s after the refused batch: %v, want not found", c.what, c.id, err)
		}
		if n := search(c.action); n != 0 {
			t.Fatalf("%s: action=%s after the refused batch: %d matches", c.what, c.action, n)
		}
	}
	up := mk("a1", "U")
	up.Version = 2
	if err := put(up); err == nil || errors.Is(err, store.ErrConflict) {
		t.Fatalf("version 2 through PutNew: %v, want a refusal", err)
	}
	// A resource PutNew stored is updated like any other: its index rows
	// are replaced by the new version's.
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, up) }); err != nil {
		t.Fatal(err)
	}
	if n := search("R"); n != 1 {
		t.Fatalf("action=R after a1's update: %d matches, want 1", n)
	}
	eq(t, "action=U after a1's update", find(t, s, "AuditEvent", one(store.Predicate{Param: "action", Token: &store.TokenMatch{Code: "U"}})), []string{"a1"})
	if v, err := s.History(ctx, store.HistoryQuery{Type: "AuditEvent", ID: "a1"}); err != nil || len(v.Versions) != 2 {
		t.Fatalf("a1's history: %v %v", v, err)
	}
}
