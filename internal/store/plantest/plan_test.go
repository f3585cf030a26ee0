package plantest_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
	"github.com/lapis-health/lapis/internal/store/sqlite"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

const base = "http://localhost/fhir"

// bundles is how many Synthea transaction bundles the tests post.
const bundles = 12

type opener func(t testing.TB) store.Store

func dialects(t testing.TB) map[string]opener {
	dir := t.TempDir()
	var pgURL string
	return map[string]opener{
		"sqlite": func(t testing.TB) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(dir, "lapis.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgres": func(t testing.TB) store.Store {
			if pgURL == "" {
				pgURL = pgtest.New(t)
			}
			s, err := postgres.Open(context.Background(), pgURL)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func service(t testing.TB, reg *definitions.Registry, st store.Store) *resource.Service {
	t.Helper()
	ex, err := extract.New(reg, base)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := resource.New(resource.Config{Store: st, Registry: reg, Validator: validate.New(reg), Indexer: ex,
		Parser: search.NewParser(reg, base, 1000, 50), BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// subject names the patient the reference searches are about.
type subject struct{ id, family string }

// searches are the reference searches of one patient: the first one is
// checked for its _revinclude plan, the last two for their chain and _has
// plans (checkFixed).
func searches(p subject) []struct{ typ, query string } {
	return []struct{ typ, query string }{
		{"Patient", "_id=" + p.id + "&_revinclude=Observation:patient"},
		{"Observation", "patient=" + p.id + "&category=laboratory&date=ge2015-01-01"},
		{"Observation", "subject=Patient/" + p.id + "&code=http://loinc.org|8302-2"},
		{"Observation", "subject:Patient.name=" + url.QueryEscape(p.family)},
		{"Encounter", "_has:Observation:encounter:code=8302-2"},
	}
}

// plans runs the reference searches and returns the plan of every
// statement they run, and how many resources each returned.
func plans(t *testing.T, svc *resource.Service, pat subject) []string {
	t.Helper()
	var out []string
	for _, s := range searches(pat) {
		v, err := url.ParseQuery(s.query)
		if err != nil {
			t.Fatal(err)
		}
		p := &sqlgen.Plans{}
		start := time.Now()
		res, err := svc.Search(sqlgen.WithExplain(context.Background(), p), s.typ, v, true)
		if err != nil {
			t.Fatalf("%s?%s: %v", s.typ, s.query, err)
		}
		var b struct {
			Entry []json.RawMessage `json:"entry"`
		}
		_ = json.Unmarshal(res.JSON(), &b)
		t.Logf("%s?%s: %d entries, %v (with EXPLAIN)", s.typ, s.query, len(b.Entry), time.Since(start))
		out = append(out, s.typ+"?"+s.query+"\n"+normalizePlan(strings.Join(p.Steps(), "\n--\n")))
	}
	return out
}

// TestPlansAfterGrowth fills an empty store through service transactions
// (the path of POSTed Bundles) and checks that the reference searches run
// with the plans they get on the same data after the store is reopened and
// its statistics refreshed, on every dialect.
func TestPlansAfterGrowth(t *testing.T) {
	files, reg := setup(t)
	for name, open := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			svc := service(t, reg, st)
			// Search before and while data arrives, so every pooled
			// connection has planned these shapes on an empty or small
			// database.
			pat := subject{id: "none", family: "none"}
			plans(t, svc, pat)
			for i, f := range files {
				post(t, svc, f)
				if i == 0 {
					pat = firstPatient(t, svc)
				}
				for range 4 {
					checkFixed(t, name, plans(t, svc, pat), false)
				}
			}
			// The last refresh the growth triggered runs in the background.
			if w, ok := st.(store.StatsWaiter); ok {
				w.WaitStats()
			}
			grown := plans(t, svc, pat)
			checkFixed(t, name, grown, true)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open(t)
			defer st.Close()
			if an, ok := st.(store.Analyzer); ok {
				if err := an.Analyze(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			fresh := plans(t, service(t, reg, st), pat)
			for i := range grown {
				if grown[i] != fresh[i] {
					t.Errorf("plan after growth differs from the plan on fresh statistics:\n--- grown\n%s\n--- fresh\n%s", grown[i], fresh[i])
				}
			}
			checkLiveProbe(t, name, st, reg, pat)
		})
	}
}

// checkLiveProbe checks that _has probes the referenced resources, and
// whether they are deleted, in the covering (type, id) index alone: on
// PostgreSQL an index-only scan once the table is vacuumed (its pages
// all-visible), as autovacuum leaves it after a load.
func checkLiveProbe(t *testing.T, dialect string, st store.Store, reg *definitions.Registry, pat subject) {
	t.Helper()
	want := "COVERING INDEX resources_type_id_live"
	if ps, ok := st.(*postgres.Store); ok {
		want = "Index Only Scan using resources_type_id_live"
		if _, err := ps.Pool().Exec(context.Background(), "VACUUM (ANALYZE) resources"); err != nil {
			t.Fatal(err)
		}
	}
	has := plans(t, service(t, reg, st), pat)[4]
	if !strings.Contains(strings.Split(has, "\n--\n")[0], want) {
		t.Errorf("_has (%s): the referenced rows are not probed by %q:\n%s", dialect, want, has)
	}
}

// setup returns the Synthea bundles the tests post and the definitions.
func setup(t testing.TB) ([]string, *definitions.Registry) {
	t.Helper()
	files := shareddata.Glob(t, "*.json", "data", "synthea")
	if len(files) > bundles {
		files = files[:bundles]
	}
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	return files, reg
}

// post runs the bundle in file f through the service, as a POSTed
// transaction.
func post(t testing.TB, svc *resource.Service, f string) {
	t.Helper()
	body, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Bundle(context.Background(), body, resource.ReturnMinimal); err != nil {
		t.Fatalf("%s: %v", filepath.Base(f), err)
	}
}

func firstPatient(t testing.TB, svc *resource.Service) subject {
	t.Helper()
	res, err := svc.Search(context.Background(), "Patient", url.Values{"_count": {"1"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID   string
				Name []struct{ Family string }
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(res.JSON(), &b); err != nil || len(b.Entry) == 0 || len(b.Entry[0].Resource.Name) == 0 {
		t.Fatalf("no patient with a name: %v", err)
	}
	r := b.Entry[0].Resource
	return subject{id: r.ID, family: r.Name[0].Family}
}

// checkFixed checks the plans of the shapes whose SQL fixes the plan
// whatever the statistics say: _revinclude goes from the page's rids
// through the reference target index; a chain finds the named Patients
// through the string index, then the Observations referencing them
// through the reference target index; _has finds the coded Observations
// through the token index, then their references by rid (on SQLite in
// the index of one type's and parameter's references, idx_reference_src,
// not the rid index of all references). None of them
// reads the reference rows of a whole type and parameter (the url index,
// or a scan of the table). The first step of the chain and _has (string
// and token index) is required once the store has grown.
func checkFixed(t *testing.T, dialect string, plans []string, grown bool) {
	t.Helper()
	// The _revinclude's statement is the last (PostgreSQL reads the
	// matches' rows in their rid query, SQLite apart).
	steps := strings.Split(plans[0], "\n--\n")
	last := steps[len(steps)-1]
	if len(steps) < 2 || !strings.Contains(last, "idx_reference_target") || strings.Contains(last, "idx_reference_url") {
		t.Fatalf("_revinclude not driven by the reference target index:\n%s", plans[0])
	}
	chain, has := []string{"idx_reference_target"}, []string{"idx_reference_src"}
	if dialect == "postgres" {
		has = []string{"idx_reference_rid"}
	}
	if grown {
		// While the tables are a few pages, PostgreSQL may rightly read
		// the whole string index table for the Patients.
		chain = append([]string{"idx_string_search"}, chain...)
		has = append([]string{"idx_token_search"}, has...)
	}
	checkDriven(t, dialect, "chain", plans[3], chain...)
	checkDriven(t, dialect, "_has", plans[4], has...)
}

// checkDriven checks that the rid query of a search plan uses the indexes
// of want, in that order, and never reads a whole type's references.
func checkDriven(t *testing.T, dialect, shape, plan string, want ...string) {
	t.Helper()
	steps := strings.Split(plan, "\n--\n")
	rid := steps[0]
	at := 0
	for _, ix := range want {
		i := strings.Index(rid[at:], ix)
		if i < 0 {
			t.Fatalf("%s (%s): rid query does not use %s after %v:\n%s", shape, dialect, ix, want, plan)
		}
		at += i + len(ix)
	}
	bad := []string{"idx_reference_url", "SCAN idx_reference", "Seq Scan on idx_reference", "SCAN resources", "Seq Scan on resources",
		"resources_type_last_updated"}
	for _, b := range bad {
		if strings.Contains(rid, b) {
			t.Fatalf("%s (%s): rid query reads %q:\n%s", shape, dialect, b, plan)
		}
	}
}

// rowLookupRE matches SQLite's two equivalent ways to fetch one resources
// row by rid: the table's integer primary key or the covering index whose
// key is rid. They cost the same single probe, and SQLite picks either on
// ties, so the comparison treats them as one step.
var rowLookupRE = regexp.MustCompile(`SEARCH (\w+) USING (INTEGER PRIMARY KEY \(rowid=\?\)|COVERING INDEX resources_live \(rid=\?\))`)

// memoizeRE matches a PostgreSQL Memoize node and its details: a cache
// in front of an inner index probe, which the planner adds or leaves out
// by its estimate of repeated keys without changing the access path.
var memoizeRE = regexp.MustCompile(`^\s*(->\s+Memoize|Cache Key:|Cache Mode:)`)

// normalizePlan rewrites equivalent single-row lookups to one form, and
// leaves out Memoize nodes and the indentation (which a Memoize shifts).
func normalizePlan(plan string) string {
	plan = rowLookupRE.ReplaceAllString(plan, "SEARCH $1 BY rid")
	var out []string
	for _, line := range strings.Split(plan, "\n") {
		if !memoizeRE.MatchString(line) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
