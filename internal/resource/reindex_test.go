package resource_test

import (
	"context"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/store"
)

// TestReindex wipes a resource's index rows behind the service's back and
// checks that Reindex restores them from the stored body, without a new
// version.
func TestReindex(t *testing.T) {
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.Database.DataDir = t.TempDir()
	if err := cfg.Normalize(false); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
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
	err = a.Store.Update(ctx, func(tx store.Tx) error {
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
