package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// SnapshotsStored checks that paging snapshots reach the database: the
// snapshots of several searches, saved while a store is open, serve their
// next pages from a store opened afterwards on the same database, which
// has none of them in memory. open opens a store on that one database
// each time it is called; SnapshotsStored closes what it opens.
func SnapshotsStored(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	for i := range 3 {
		PutPatient(t, s, fmt.Sprintf("p%d", i), "female")
	}
	q := func() *store.Query {
		return &store.Query{Type: "Patient", Count: 1, Where: []store.Clause{{Any: []store.Predicate{{Param: "gender", Token: &store.TokenMatch{Code: "female"}}}}}}
	}
	var snaps []string
	for range 5 {
		r, err := s.Search(ctx, q())
		if err != nil {
			s.Close()
			t.Fatal(err)
		}
		if r.Snapshot == "" || !r.HasMore || r.Total != 3 {
			s.Close()
			t.Fatalf("first page: snapshot %q, more %v, total %d", r.Snapshot, r.HasMore, r.Total)
		}
		snaps = append(snaps, r.Snapshot)
	}
	// Closing stores what the background writer still holds.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t)
	defer s2.Close()
	for _, id := range snaps {
		next := q()
		next.Snapshot, next.Offset = id, 1
		p, err := s2.Search(ctx, next)
		if err != nil {
			t.Fatalf("snapshot %s from the database: %v", id, err)
		}
		if len(p.Matches) != 1 || p.Matches[0].ID != "p1" || p.Total != 3 || !p.HasMore {
			t.Fatalf("snapshot %s from the database: %d matches, total %d, more %v", id, len(p.Matches), p.Total, p.HasMore)
		}
	}
}
