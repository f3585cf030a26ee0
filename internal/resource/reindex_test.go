package resource_test

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

// TestReindex wipes a resource's index rows behind the service's back and
// checks that Reindex restores them from the stored body, without a new
// version.
func TestReindex(t *testing.T) {
	ctx := context.Background()
	a := openReindexApp(t)
	for i := 0; i < 7; i++ {
		if _, err := a.Service.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Reindexova"}],"gender":"female"}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		r, err := a.Store.Search(ctx, &store.Query{Type: "Patient", Count: 100, Where: []store.Clause{{Any: []store.Predicate{{Param: "family", String: &store.StringMatch{Value: "reindex"}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Matches)
	}
	if n := count(); n != 7 {
		t.Fatalf("before: %d", n)
	}
	// Drop every index row, as an older extractor that missed the parameter would have.
	res, _ := a.Store.Search(ctx, &store.Query{Type: "Patient", Count: 100})
	err := a.Store.Update(ctx, func(tx store.Tx) error {
		for _, r := range res.Matches {
			if err := tx.(store.IndexWriter).PutIndex(ctx, "Patient", r.ID, &store.Index{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after wipe: %d", n)
	}
	var seen int
	n, err := a.Service.Reindex(ctx, []string{"Patient"}, func(k int) { seen = k })
	if err != nil || n != 7 || seen != 7 {
		t.Fatalf("reindex: %d %d %v", n, seen, err)
	}
	if n := count(); n != 7 {
		t.Fatalf("after reindex: %d", n)
	}
	r, _ := a.Store.Read(ctx, "Patient", res.Matches[0].ID)
	if r.VersionID != 1 {
		t.Fatalf("reindex wrote a version: %d", r.VersionID)
	}
	if _, err := a.Service.Reindex(ctx, []string{"Nope"}, nil); err == nil {
		t.Fatal("unknown type accepted")
	}
}

// TestReindexConcurrentUpdate re-indexes a page read before the resource
// was updated (as when the server writes during `lapis reindex`) and checks
// that the index still describes the current version, not the stale body.
func TestReindexConcurrentUpdate(t *testing.T) {
	ctx := context.Background()
	a := openReindexApp(t)
	if _, err := a.Service.Update(ctx, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Before"}]}`), ""); err != nil {
		t.Fatal(err)
	}
	stale, err := a.Store.Read(ctx, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Update(ctx, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"After"}]}`), ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Service.ReindexPage(ctx, []store.Resource{*stale}); err != nil {
		t.Fatal(err)
	}
	for family, want := range map[string]int{"before": 0, "after": 1} {
		r, err := a.Store.Search(ctx, &store.Query{Type: "Patient", Count: 10, Where: []store.Clause{{Any: []store.Predicate{{Param: "family", String: &store.StringMatch{Value: family}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Matches) != want {
			t.Errorf("family=%s: %d matches, want %d", family, len(r.Matches), want)
		}
	}
}

// openReindexApp opens an application on a fresh SQLite data directory.
func openReindexApp(t *testing.T) *app.App {
	t.Helper()
	return apptest.Open(t, "sqlite", nil)
}
