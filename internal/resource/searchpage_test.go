package resource_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// pageStore records the searches a service runs and the largest page it
// was handed.
type pageStore struct {
	store.Store
	mu       sync.Mutex
	searches int
	largest  int
	// expire makes every page after the first find its snapshot expired.
	expire bool
}

func (s *pageStore) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	if s.expire && q.Snapshot != "" {
		return nil, store.ErrSnapshotExpired
	}
	res, err := s.Store.Search(ctx, q)
	if err == nil {
		s.mu.Lock()
		s.searches++
		s.largest = max(s.largest, len(res.Matches)+len(res.Included))
		s.mu.Unlock()
	}
	return res, err
}

// pagingService opens an app on dialect with n Patients of family
// Pagingova (and two others), and returns a service over a pageStore of
// the same database.
func pagingService(t *testing.T, dialect string, n int, opts ...func(*resource.Config)) (*resource.Service, *pageStore) {
	t.Helper()
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.Server.BaseURL = "http://h"
	cfg.Database.DataDir = t.TempDir()
	if dialect == "postgres" {
		cfg.Database.URL = pgtest.New(t)
	}
	if err := cfg.Normalize(false); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"p%03d","name":[{"family":"Pagingova"}]}`, i)
		if _, err := a.Service.Update(ctx, "Patient", fmt.Sprintf("p%03d", i), []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"x1", "x2"} {
		if _, err := a.Service.Update(ctx, "Patient", id, []byte(`{"resourceType":"Patient","id":"`+id+`","name":[{"family":"Other"}]}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := extract.New(a.Registry, cfg.FHIRBase())
	if err != nil {
		t.Fatal(err)
	}
	ps := &pageStore{Store: a.Store}
	rc := resource.Config{
		Store: ps, Registry: a.Registry, Validator: validate.New(a.Registry), Indexer: ex,
		Parser:  search.NewParser(a.Registry, cfg.FHIRBase(), cfg.FHIR.MaxCount, cfg.FHIR.DefaultCount),
		BaseURL: cfg.FHIRBase(),
	}
	for _, o := range opts {
		o(&rc)
	}
	svc, err := resource.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return svc, ps
}

func dialects(t *testing.T, f func(t *testing.T, dialect string)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}

// TestSearchPagePaging follows a search's next links page by page: every
// page holds at most _count matches as stored resources, the total and
// links are set, and the pages together hold every match once.
func TestSearchPagePaging(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		svc, _ := pagingService(t, dialect, 25)
		ctx := context.Background()
		params := url.Values{"family": {"pagingova"}, "_count": {"10"}, "_sort": {"_id"}}
		var ids []string
		for pages := 1; ; pages++ {
			p, err := svc.Search(ctx, "Patient", params, true)
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 25 || len(p.Matches) > 10 || len(p.Included) != 0 || len(p.Issues) != 0 || len(p.Links) == 0 || p.Links[0].Relation != "self" {
				t.Fatalf("page %d: total %d, %d matches, %d included, issues %v, links %v", pages, p.Total, len(p.Matches), len(p.Included), p.Issues, p.Links)
			}
			for _, r := range p.Matches {
				if r.Type != "Patient" || r.VersionID != 1 || r.LastUpdated.IsZero() || !strings.Contains(string(r.Body), `"id":"`+r.ID+`"`) {
					t.Fatalf("match %+v", r)
				}
				ids = append(ids, r.ID)
			}
			next := p.Next()
			if next == "" {
				if pages != 3 {
					t.Fatalf("%d pages, want 3", pages)
				}
				break
			}
			u, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			params = u.Query()
		}
		if len(ids) != 25 || ids[0] != "p000" || ids[24] != "p024" {
			t.Fatalf("ids %v", ids)
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("ids out of order or repeated: %v", ids)
			}
		}
	})
}

// TestEach streams a search of more matches than a page holds: every
// match arrives once, in the search's order, while the store is asked
// for one page of _count at a time; an error of fn stops the stream.
func TestEach(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		svc, ps := pagingService(t, dialect, 25)
		ctx := context.Background()
		var ids []string
		err := svc.Each(ctx, "Patient", url.Values{"family": {"pagingova"}, "_count": {"10"}, "_sort": {"_id"}, "_elements": {"name"}}, func(r *store.Resource) error {
			if r.Type != "Patient" || !strings.Contains(string(r.Body), `"SUBSETTED"`) {
				return fmt.Errorf("resource %s/%s: %s", r.Type, r.ID, r.Body)
			}
			ids = append(ids, r.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 25 || ids[0] != "p000" || ids[24] != "p024" {
			t.Fatalf("ids %v", ids)
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("ids out of order or repeated: %v", ids)
			}
		}
		if ps.searches != 3 || ps.largest > 10 {
			t.Fatalf("%d store searches, largest page %d: want 3 pages of at most 10", ps.searches, ps.largest)
		}

		stop := errors.New("stop")
		n := 0
		err = svc.Each(ctx, "Patient", url.Values{"_count": {"10"}}, func(*store.Resource) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("Each returned %v after %d calls, want stop after 1", err, n)
		}
		// A snapshot that expires midway is a 409, not a restart that
		// could repeat or skip matches.
		ps.expire = true
		n = 0
		err = svc.Each(ctx, "Patient", url.Values{"_count": {"10"}, "_sort": {"_id"}}, func(*store.Resource) error { n++; return nil })
		var oe *outcome.Error
		if !errors.As(err, &oe) || oe.Status != http.StatusConflict || n != 10 {
			t.Fatalf("expired snapshot: %v after %d resources, want a 409 after 10", err, n)
		}
		ps.expire = false
		// Without _sort: keyset paging (no snapshot to expire), every
		// match once.
		ps.expire = true
		seen := map[string]bool{}
		err = svc.Each(ctx, "Patient", url.Values{"_count": {"10"}}, func(r *store.Resource) error {
			if seen[r.ID] {
				return fmt.Errorf("%s twice", r.ID)
			}
			seen[r.ID] = true
			return nil
		})
		if err != nil || len(seen) != 27 {
			t.Fatalf("keyset paging: %v, %d resources, want 27", err, len(seen))
		}
		ps.expire = false
		// Strict: an unknown parameter is refused, not ignored.
		if err := svc.Each(ctx, "Patient", url.Values{"bogus": {"1"}}, func(*store.Resource) error { return nil }); err == nil {
			t.Fatal("Each accepted an unknown parameter")
		}
	})
}

// tooManyRows is an Indexer that refuses every resource as having too
// many index rows.
type tooManyRows struct{}

func (tooManyRows) Extract(map[string]any) (store.Index, error) {
	return store.Index{}, fmt.Errorf("extract: %w", store.ErrTooManyIndexRows)
}

// TestTooManyIndexRows: a resource the indexer refuses for its number of
// searchable values is a 413 too-costly saying so, not a 500 or a 422.
func TestTooManyIndexRows(t *testing.T) {
	svc, _ := pagingService(t, "sqlite", 0, func(c *resource.Config) { c.Indexer = tooManyRows{} })
	_, err := svc.Create(context.Background(), "Patient", []byte(`{"resourceType":"Patient"}`), "")
	var oe *outcome.Error
	if !errors.As(err, &oe) || oe.Status != http.StatusRequestEntityTooLarge || !strings.Contains(oe.Error(), "searchable values") {
		t.Fatalf("create: %v", err)
	}
}
