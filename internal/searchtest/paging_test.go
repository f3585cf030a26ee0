package searchtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhirapi"
	"github.com/lapis-health/lapis/internal/search"
)

// page follows next links from a first search and returns every match in
// order, checking totals on the way.
func (e *env) allPages(t *testing.T, typ, query string) (matches []string, pages int) {
	t.Helper()
	r, err := e.search(t, typ, query, false)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query, err)
	}
	total := r.total
	for {
		pages++
		matches = append(matches, r.matches...)
		if r.next == "" {
			break
		}
		if pages > 50 {
			t.Fatalf("too many pages")
		}
		u, err := url.Parse(r.next)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.next, base+"/fhir/"+typ+"?") {
			t.Fatalf("next link %q is not a %s search on this server", r.next, typ)
		}
		r, err = e.search(t, typ, u.RawQuery, false)
		if err != nil {
			t.Fatalf("next page %s: %v", r.next, err)
		}
		if total != nil && r.total != nil && *r.total != *total {
			t.Errorf("total changed between pages: %d then %d", *total, *r.total)
		}
	}
	if total != nil && *total != len(matches) {
		t.Errorf("%s?%s: total %d but %d matches over %d pages", typ, query, *total, len(matches), pages)
	}
	return matches, pages
}

func TestPaging(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, e *env) {
		for _, c := range []struct {
			typ, query string
			want       []string // ordered when the query sorts
		}{
			{"Patient", "_count=2&_sort=family", ids("p1", "p3", "p2", "p5", "p4")},
			{"Patient", "_count=1&_sort=-birthdate", ids("p5", "p3", "p2", "p4", "p1")},
			{"Patient", "_count=2", nil},
			{"Patient", "_count=1&_sort=gender", nil},     // ties: every page must still be disjoint
			{"Observation", "_count=2&_sort=status", nil}, // ties
			{"Observation", "_count=4&_sort=-date", ids("o3", "o2", "o5", "o1", "o4", "o6")},
			{"Observation", "_count=1&patient=p1,p2&_include=Observation:patient", nil},
			{"Observation", "_count=3&_sort=_lastUpdated", nil},
		} {
			t.Run(c.typ+"?"+c.query, func(t *testing.T) {
				got, pages := e.allPages(t, c.typ, c.query)
				if d := dups(got); len(d) > 0 {
					t.Errorf("matches repeated across pages: %v (all: %v)", d, got)
				}
				full, err := e.search(t, c.typ, removeCount(c.query)+"&_count=100", false)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(sorted(got), sorted(full.matches)) {
					t.Errorf("pages gave %v, one page gives %v", got, full.matches)
				}
				if c.want != nil && !slices.Equal(got, c.want) {
					t.Errorf("paged order %v, want %v", got, c.want)
				}
				if strings.Contains(c.query, "_sort") && !slices.Equal(got, full.matches) {
					t.Errorf("paged order %v differs from single-page order %v", got, full.matches)
				}
				if pages < 2 {
					t.Errorf("expected several pages, got %d", pages)
				}
			})
		}
		t.Run("include on every page", func(t *testing.T) {
			r, err := e.search(t, "Observation", "_count=1&patient=p1&_include=Observation:patient", false)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				if !slices.Equal(r.included, ids("Patient/p1")) {
					t.Errorf("page %d included %v", i, r.included)
				}
				if r.next == "" {
					break
				}
				u, _ := url.Parse(r.next)
				if r, err = e.search(t, "Observation", u.RawQuery, false); err != nil {
					t.Fatal(err)
				}
			}
		})
		t.Run("_total", func(t *testing.T) {
			r, err := e.search(t, "Patient", "_count=1", false)
			if err != nil {
				t.Fatal(err)
			}
			if r.total == nil || *r.total != 5 || len(r.matches) != 1 || r.next == "" {
				t.Errorf("_count=1: total %s, %d matches, next %q", fmtp(r.total), len(r.matches), r.next)
			}
			r, err = e.search(t, "Patient", "_total=none", false)
			if err != nil {
				t.Fatal(err)
			}
			if r.total != nil {
				t.Errorf("_total=none: total %d", *r.total)
			}
			for _, q := range []string{"_total=accurate&gender=female", "_total=estimate&gender=female", "_summary=count&gender=female", "_count=0&gender=female"} {
				r, err = e.search(t, "Patient", q, false)
				if err != nil {
					t.Fatal(err)
				}
				if r.total == nil || *r.total != 2 {
					t.Errorf("%s: total %s, want 2", q, fmtp(r.total))
				}
				if strings.Contains(q, "count") && len(r.matches) != 0 {
					t.Errorf("%s: %d matches, want none", q, len(r.matches))
				}
			}
		})
	})
}

func removeCount(q string) string {
	var keep []string
	for _, kv := range strings.Split(q, "&") {
		if !strings.HasPrefix(kv, "_count=") {
			keep = append(keep, kv)
		}
	}
	return strings.Join(keep, "&")
}

// TestHTTP checks the certification suite's first-search rules through the
// HTTP layer: POST _search gives the same results as GET, and
// patient=Patient/{id} the same as patient={id}.
func TestHTTP(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, e *env) {
		h := fhirapi.New(fhirapi.Config{BaseURL: base + "/fhir"}, e.app.Service, e.app.Registry)
		do := func(method, path, body string) *result {
			t.Helper()
			req := searchRequest(method, path, body)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(context.Background()))
			if rec.Code != http.StatusOK {
				t.Fatalf("%s %s: status %d: %s", method, path, rec.Code, rec.Body.String())
			}
			typ := strings.Split(strings.Split(strings.TrimPrefix(path, "/fhir/"), "?")[0], "/")[0]
			return parseBundle(t, typ, rec.Body.Bytes())
		}
		for _, q := range []string{
			"patient=p1",
			"patient=p1&code=8480-6",
			"patient=p2&code=http://loinc.org|8480-6",
			"patient=p1,p2&status=final,amended",
			"patient=p1&date=ge2015-01-01",
			"patient=p1&_revinclude=Provenance:target",
			"patient=p2&category=vital-signs",
		} {
			get := do("GET", "/fhir/Observation?"+q, "")
			post := do("POST", "/fhir/Observation/_search", q)
			if !slices.Equal(sorted(get.matches), sorted(post.matches)) || !slices.Equal(sorted(get.included), sorted(post.included)) {
				t.Errorf("%s: GET %v+%v, POST %v+%v", q, get.matches, get.included, post.matches, post.included)
			}
			if len(get.matches) == 0 {
				t.Errorf("%s: no matches", q)
			}
			// Half in the query string, half in the body.
			if k, rest, ok := strings.Cut(q, "&"); ok {
				mixed := do("POST", "/fhir/Observation/_search?"+k, rest)
				if !slices.Equal(sorted(get.matches), sorted(mixed.matches)) {
					t.Errorf("%s: GET %v, POST with query %v", q, get.matches, mixed.matches)
				}
			}
			for _, form := range []string{"Patient/", base + "/fhir/Patient/"} {
				q2 := strings.Replace(q, "patient=", "patient="+form, 1)
				q2 = strings.Replace(q2, ",p2", ","+form+"p2", 1)
				r3 := do("GET", "/fhir/Observation?"+q2, "")
				if !slices.Equal(sorted(get.matches), sorted(r3.matches)) || *get.total != *r3.total {
					t.Errorf("%s: %v, with %s: %v", q, get.matches, form, r3.matches)
				}
			}
		}
	})
}

// TestManyValues: the largest search the parser accepts (search.MaxValues
// values, as one OR list or as separate AND-ed parameters) compiles to SQL
// that both dialects run (SQLite limits expression depth to 1000); one more
// value is a 400. It calls the parser and the store directly: the resource
// service applies its own, smaller, limits first.
func TestManyValues(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, e *env) {
		run := storeSearch(t, e, "Patient")
		or := "name=" + strings.Repeat("zz,", search.MaxValues-1) + "chalmers"
		and := strings.Repeat("name=c&", search.MaxClauses/2) + strings.Repeat("given=p&", search.MaxClauses/2-1) + "family=chalmers"
		mixed := strings.Repeat("name="+strings.Repeat("q,", search.MaxValues/search.MaxClauses-1)+"chal&", search.MaxClauses)
		for _, c := range []struct {
			name, query string
			want        []string
		}{
			{"or", or, ids("p1", "p3")},
			{"and", and, ids("p1")},
			{"mixed", strings.TrimSuffix(mixed, "&"), ids("p1", "p3")},
			{"or ids", "_id=" + strings.Repeat("x,", search.MaxValues-1) + "p2", ids("p2")},
			{"or tokens", "identifier=" + strings.Repeat("u|x,", search.MaxValues-1) + "12345", ids("p1")},
			{"not", "gender:not=" + strings.Repeat("x,", search.MaxValues-1) + "male", ids("p2", "p3", "p4", "p5")},
			{"dates", "birthdate=" + strings.Repeat("1900,", search.MaxValues-1) + "1980", ids("p2", "p3")},
		} {
			t.Run(c.name, func(t *testing.T) {
				checkMatches(t, run, c.query, c.want)
				if c.name != "and" {
					if _, err := run(c.query + ",x"); errStatus(err) != 400 {
						t.Errorf("one value more: err %v, want a 400", err)
					}
				}
				if c.name == "and" || c.name == "mixed" {
					if _, err := run(c.query + "&name=x"); errStatus(err) != 400 {
						t.Errorf("one parameter more: err %v, want a 400", err)
					}
				}
			})
		}
	})
}

// storeSearch returns a search of typ that calls the parser (with a
// count bound of 1000) and the store directly, bypassing the resource
// service's own limits: the sorted ids of the matches, or the parser's
// error.
func storeSearch(t *testing.T, e *env, typ string) func(query string) ([]string, error) {
	p := search.NewParser(e.app.Registry, base+"/fhir", 1000, 100)
	return func(query string) ([]string, error) {
		params, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		req, err := p.Parse(typ, params, false)
		if err != nil {
			return nil, err
		}
		res, err := e.app.Store.Search(context.Background(), &req.Query)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		var got []string
		for _, m := range res.Matches {
			got = append(got, m.ID)
		}
		return sorted(got), nil
	}
}

// searchRequest is a request for FHIR JSON; form, when not empty, is its
// URL-encoded body (POST _search).
func searchRequest(method, path, form string) *http.Request {
	if form == "" {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Accept", "application/fhir+json")
		return req
	}
	req := httptest.NewRequest(method, path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/fhir+json")
	return req
}

// checkMatches fails t unless run(query) matches exactly want.
func checkMatches(t *testing.T, run func(query string) ([]string, error), query string, want []string) {
	t.Helper()
	got, err := run(query)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("matches %v, want %v", got, want)
	}
}
