// Package storetest is the behaviour suite every store.Store implementation
// must pass. Dialect packages call Run from their tests; index rows are
// built by hand, so the suite depends on nothing above package store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// Run runs the suite; open returns a new, empty store for each subtest (and
// closes it in t.Cleanup). Subtests run in parallel, so open must be safe
// for concurrent use.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CRUD", testCRUD},
		{"PutNew", testPutNew},
		{"Conflicts", testConflicts},
		{"Rollback", testRollback},
		{"SameTxUpdates", testSameTxUpdates},
		{"History", testHistory},
		{"HistoryFilter", testHistoryFilter},
		{"HistoryTypeOnly", testHistoryTypeOnly},
		{"HistoryNoVisibleMember", testHistoryNoVisibleMember},
		{"HistoryVersions", testHistoryVersions},
		{"VersionIndex", testVersionIndex},
		{"String", testString},
		{"Token", testToken},
		{"Reference", testReference},
		{"Date", testDate},
		{"NumberQuantity", testNumberQuantity},
		{"URI", testURI},
		{"IDAndLastUpdated", testIDAndLastUpdated},
		{"Missing", testMissing},
		{"OrAnd", testOrAnd},
		{"Chain", testChain},
		{"Has", testHas},
		{"Composite", testComposite},
		{"Sort", testSort},
		{"SystemLevel", testSystemLevel},
		{"Totals", testTotals},
		{"Paging", testPaging},
		{"PagingPastCap", testPagingPastCap},
		{"Include", testInclude},
		{"Iterate", testIterate},
		{"AccessFilter", testAccessFilter},
		{"AccessFilterTypes", testAccessFilterTypes},
		{"AccessFilterGranular", testAccessFilterGranular},
		{"AccessFilterMixed", testAccessFilterMixed},
		{"AccessFilterExclusive", testAccessFilterExclusive},
		{"QueryCompartment", testQueryCompartment},
		{"TxSearch", testTxSearch},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentCreate", testConcurrentCreate},
		{"PutIndex", testPutIndex},
		{"Inspect", testInspect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

// Opened returns the store s that an Open returned with err: it fails tb
// on err and closes s when tb ends.
func Opened[S store.Store](tb testing.TB, s S, err error) S {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// t0 is the base time of the fixtures.
var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func body(typ, id string, v int64) []byte {
	return fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"meta":{"versionId":"%d"}}`, typ, id, v)
}

// put stores one version in its own transaction.
func put(t *testing.T, s store.Store, w *store.Write) {
	t.Helper()
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) }); err != nil {
		t.Fatalf("put %s/%s v%d: %v", w.Type, w.ID, w.Version, err)
	}
}

// create stores version 1 of typ/id with index rows ix.
func create(t *testing.T, s store.Store, typ, id string, ix store.Index) {
	t.Helper()
	put(t, s, &store.Write{Type: typ, ID: id, Version: 1, LastUpdated: t0, Method: "POST", Body: body(typ, id, 1), Index: ix})
}

// createAll stores many version-1 resources in one transaction.
func createAll(t *testing.T, s store.Store, ws ...*store.Write) {
	t.Helper()
	err := s.Update(ctx, func(tx store.Tx) error {
		for _, w := range ws {
			if w.Version == 0 {
				w.Version = 1
			}
			if w.Method == "" {
				w.Method = "POST"
			}
			if w.LastUpdated.IsZero() {
				w.LastUpdated = t0
			}
			if w.Body == nil {
				w.Body = body(w.Type, w.ID, w.Version)
			}
			if err := tx.Put(ctx, w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func search(t *testing.T, s store.Store, q *store.Query) *store.SearchResult {
	t.Helper()
	if q.Count == 0 {
		q.Count = 100
	}
	r, err := s.Search(ctx, q)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	return r
}

// ids returns "id" (or "Type/id" when several types occur) of resources.
func ids(rs []store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func refs(rs []store.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

// find returns the ids matching clauses on typ, in default order.
func find(t *testing.T, s store.Store, typ string, where ...store.Clause) []string {
	t.Helper()
	return ids(search(t, s, &store.Query{Type: typ, Where: where}).Matches)
}

func eq[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func one(p store.Predicate) store.Clause { return store.Clause{Any: []store.Predicate{p}} }

func ptr[T any](v T) *T { return &v }

func tok(param, system, code string) store.TokenRow {
	return store.TokenRow{Param: param, System: system, Code: code}
}

func ref(param, typ, id string) store.ReferenceRow {
	return store.ReferenceRow{Param: param, TargetType: typ, TargetID: id, URL: typ + "/" + id}
}

func str(param, v string) store.StringRow {
	return store.StringRow{Param: param, Norm: store.NormalizeString(v), Exact: v}
}

func ms(s string) int64 {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return tm.UnixMilli()
}

func testCRUD(t *testing.T, s store.Store) {
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read missing: %v", err)
	}
	create(t, s, "Patient", "p1", store.Index{Strings: []store.StringRow{str("name", "Alice")}})
	r, err := s.Read(ctx, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if r.VersionID != 1 || r.Deleted || r.Method != "POST" || !r.LastUpdated.Equal(t0) || string(r.Body) != string(body("Patient", "p1", 1)) {
		t.Fatalf("read: %+v", r)
	}
	t1 := t0.Add(1500 * time.Millisecond)
	put(t, s, &store.Write{Type: "Patient", ID: "p1", Version: 2, LastUpdated: t1, Method: "PUT", Body: body("Patient", "p1", 2),
		Index: store.Index{Strings: []store.StringRow{str("name", "Bob")}}})
	r, err = s.Read(ctx, "Patient", "p1")
	if err != nil || r.VersionID != 2 || r.Method != "PUT" || !r.LastUpdated.Equal(t1) || r.LastUpdated.Location() != time.UTC {
		t.Fatalf("read v2: %+v %v", r, err)
	}
	// Old index rows are gone, new ones present.
	eq(t, "name=alice", find(t, s, "Patient", one(store.Predicate{Param: "name", String: &store.StringMatch{Value: "alice"}})), []string{})
	eq(t, "name=bob", find(t, s, "Patient", one(store.Predicate{Param: "name", String: &store.StringMatch{Value: "bob"}})), []string{"p1"})

	v1, err := s.VRead(ctx, "Patient", "p1", 1)
	if err != nil || v1.VersionID != 1 || string(v1.Body) != string(body("Patient", "p1", 1)) {
		t.Fatalf("vread 1: %+v %v", v1, err)
	}
	if _, err := s.VRead(ctx, "Patient", "p1", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("vread 3: %v", err)
	}
	// Delete marker.
	put(t, s, &store.Write{Type: "Patient", ID: "p1", Version: 3, LastUpdated: t1.Add(time.Second), Method: "DELETE", Deleted: true})
	r, err = s.Read(ctx, "Patient", "p1")
	if err != nil || !r.Deleted || r.VersionID != 3 || len(r.Body) != 0 || r.Method != "DELETE" {
		t.Fatalf("read deleted: %+v %v", r, err)
	}
	v3, err := s.VRead(ctx, "Patient", "p1", 3)
	if err != nil || !v3.Deleted {
		t.Fatalf("vread deleted: %+v %v", v3, err)
	}
	eq(t, "deleted never matches", find(t, s, "Patient"), []string{})
	eq(t, "deleted never matches :missing", find(t, s, "Patient", one(store.Predicate{Param: "name", Missing: ptr(true)})), []string{})
	// Re-create after delete continues the version numbers.
	put(t, s, &store.Write{Type: "Patient", ID: "p1", Version: 4, LastUpdated: t1.Add(2 * time.Second), Method: "PUT", Body: body("Patient", "p1", 4),
		Index: store.Index{Strings: []store.StringRow{str("name", "Carol")}}})
	eq(t, "recreated", find(t, s, "Patient", one(store.Predicate{Param: "name", String: &store.StringMatch{Value: "car"}})), []string{"p1"})
	// Same id, other type, is another resource.
	create(t, s, "Observation", "p1", store.Index{})
	if r, err := s.Read(ctx, "Observation", "p1"); err != nil || r.Type != "Observation" {
		t.Fatalf("other type: %+v %v", r, err)
	}
}

func testConflicts(t *testing.T, s store.Store) {
	create(t, s, "Patient", "p1", store.Index{})
	try := func(v int64) error {
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: "p1", Version: v, LastUpdated: t0, Method: "PUT", Body: body("Patient", "p1", v)})
		})
	}
	for _, v := range []int64{0, 1, 3, 5} {
		if err := try(v); !errors.Is(err, store.ErrConflict) {
			t.Errorf("version %d: %v, want ErrConflict", v, err)
		}
	}
	if err := try(2); err != nil {
		t.Fatal(err)
	}
	// A new resource must start at version 1.
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Write{Type: "Patient", ID: "new", Version: 2, LastUpdated: t0, Method: "PUT", Body: body("Patient", "new", 2)})
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("new at v2: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new after conflict: %v", err)
	}
}

func testRollback(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, &store.Write{Type: "Patient", ID: "p1", Version: 1, LastUpdated: t0, Method: "POST", Body: body("Patient", "p1", 1),
			Index: store.Index{Tokens: []store.TokenRow{tok("gender", "", "male")}}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read after rollback: %v", err)
	}
	h, err := s.History(ctx, store.HistoryQuery{})
	if err != nil || len(h.Versions) != 0 || h.Total != 0 {
		t.Fatalf("history after rollback: %+v %v", h, err)
	}
}

func testSameTxUpdates(t *testing.T, s store.Store) {
	err := s.Update(ctx, func(tx store.Tx) error {
		for v := int64(1); v <= 3; v++ {
			err := tx.Put(ctx, &store.Write{Type: "Patient", ID: "p1", Version: v, LastUpdated: t0, Method: "PUT", Body: body("Patient", "p1", v),
				Index: store.Index{Tokens: []store.TokenRow{tok("v", "", fmt.Sprint(v))}}})
			if err != nil {
				return err
			}
			r, err := tx.Read(ctx, "Patient", "p1")
			if err != nil || r.VersionID != v {
				return fmt.Errorf("read in tx: %+v %v", r, err)
			}
			res, err := tx.Search(ctx, &store.Query{Type: "Patient", Count: 10, Where: []store.Clause{one(store.Predicate{Param: "v", Token: &store.TokenMatch{Code: fmt.Sprint(v)}})}})
			if err != nil || len(res.Matches) != 1 {
				return fmt.Errorf("search in tx v%d: %+v %v", v, res, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string][]string{"1": {}, "2": {}, "3": {"p1"}} {
		eq(t, "v="+v, find(t, s, "Patient", one(store.Predicate{Param: "v", Token: &store.TokenMatch{Code: v}})), want)
	}
}

func testHistory(t *testing.T, s store.Store) {
	// p1: 3 versions, p2: 2 versions, o1: 1 version.
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	seq := []struct {
		typ, id string
		v       int64
		del     bool
	}{{"Patient", "p1", 1, false}, {"Patient", "p2", 1, false}, {"Patient", "p1", 2, false}, {"Observation", "o1", 1, false}, {"Patient", "p2", 2, true}, {"Patient", "p1", 3, false}}
	for i, e := range seq {
		w := &store.Write{Type: e.typ, ID: e.id, Version: e.v, LastUpdated: at(i), Method: "PUT", Deleted: e.del}
		if !e.del {
			w.Body = body(e.typ, e.id, e.v)
		}
		put(t, s, w)
	}
	hist := func(q store.HistoryQuery) ([]string, int) {
		t.Helper()
		return allHistory(t, s, q)
	}
	got, total := hist(store.HistoryQuery{Count: 2})
	eq(t, "system", got, []string{"Patient/p1/3", "Patient/p2/2", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"})
	if total != 6 {
		t.Errorf("system total %d", total)
	}
	got, total = hist(store.HistoryQuery{Type: "Patient", Count: 4})
	eq(t, "type", got, []string{"Patient/p1/3", "Patient/p2/2", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"})
	if total != 5 {
		t.Errorf("type total %d", total)
	}
	got, total = hist(store.HistoryQuery{Type: "Patient", ID: "p1", Count: 1})
	eq(t, "instance", got, []string{"Patient/p1/3", "Patient/p1/2", "Patient/p1/1"})
	if total != 3 {
		t.Errorf("instance total %d", total)
	}
	// A bounded count: exact up to the limit, -1 (not computed) past it;
	// the pages are the same.
	for _, c := range []struct{ limit, want int }{{6, 6}, {100, 6}, {5, -1}, {1, -1}} {
		p, err := s.History(ctx, store.HistoryQuery{Count: 2, TotalLimit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != c.want || len(p.Versions) != 2 || p.Next == "" {
			t.Errorf("total limit %d: total %d (want %d), %d versions, next %q", c.limit, p.Total, c.want, len(p.Versions), p.Next)
		}
	}
	got, _ = hist(store.HistoryQuery{Since: at(2), At: at(5)})
	eq(t, "since/at", got, []string{"Patient/p2/2", "Observation/o1/1", "Patient/p1/2"})
	// _at: the versions current at some time in [AtFrom, At): p1/1 was
	// replaced before the period, p2/2 and p1/3 written after it; the
	// deletion p2/2 is current from its time on.
	period := func(q store.HistoryQuery, from, to time.Duration) store.HistoryQuery {
		q.AtFrom, q.At, q.Count = t0.Add(from), t0.Add(to), 2
		return q
	}
	got, total = hist(period(store.HistoryQuery{}, 150*time.Second, 210*time.Second))
	eq(t, "at period", got, []string{"Observation/o1/1", "Patient/p1/2", "Patient/p2/1"})
	if total != 3 {
		t.Errorf("at period: total %d", total)
	}
	got, _ = hist(period(store.HistoryQuery{Type: "Patient"}, 150*time.Second, 210*time.Second))
	eq(t, "at period, type", got, []string{"Patient/p1/2", "Patient/p2/1"})
	got, _ = hist(period(store.HistoryQuery{Type: "Patient", ID: "p1"}, 150*time.Second, 210*time.Second))
	eq(t, "at period, instance", got, []string{"Patient/p1/2"})
	got, _ = hist(period(store.HistoryQuery{}, 270*time.Second, 271*time.Second))
	eq(t, "at a deletion", got, []string{"Patient/p2/2", "Observation/o1/1", "Patient/p1/2"})
	got, _ = hist(period(store.HistoryQuery{Since: at(3)}, 270*time.Second, 271*time.Second))
	eq(t, "at and since", got, []string{"Patient/p2/2", "Observation/o1/1"})
	got, _ = hist(period(store.HistoryQuery{}, -time.Hour, -time.Minute))
	eq(t, "at before the first version", got, nil)
	// A type hidden (AuditEvent from a caller other than an admin): the
	// visible types' versions merged, page by page, with the At bound and
	// the count's limit.
	hideObs := &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}, "Observation": {}}}
	for _, count := range []int{1, 2, 10} {
		got, total = hist(store.HistoryQuery{Count: count, Filter: hideObs})
		eq(t, fmt.Sprintf("hidden type, count %d", count), got, []string{"Patient/p1/3", "Patient/p2/2", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"})
		if total != 5 {
			t.Errorf("hidden type, count %d: total %d", count, total)
		}
	}
	got, total = hist(store.HistoryQuery{Count: 2, At: at(5), TotalLimit: 3, Filter: hideObs})
	eq(t, "hidden type, at", got, []string{"Patient/p2/2", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"})
	if total != -1 {
		t.Errorf("hidden type, at, limit 3: total %d", total)
	}
	got, _ = hist(period(store.HistoryQuery{Filter: hideObs}, 150*time.Second, 210*time.Second))
	eq(t, "hidden type, at period", got, []string{"Patient/p1/2", "Patient/p2/1"})
	onlyObs := &store.AccessFilter{Types: map[string][]store.AccessRule{"Observation": {{}}}}
	if got, total = hist(store.HistoryQuery{Filter: onlyObs}); total != 1 {
		t.Errorf("one visible type: total %d", total)
	}
	eq(t, "one visible type", got, []string{"Observation/o1/1"})
	if got, total = hist(store.HistoryQuery{Filter: &store.AccessFilter{Types: map[string][]store.AccessRule{"Encounter": {{}}}}}); total != 0 || len(got) != 0 {
		t.Errorf("no visible version: %v, total %d", got, total)
	}
	// _since pages through the versions' time index while they are at
	// most the count's limit, and from the newest back past it: the same
	// versions either way, page by page, by type or hidden type as well.
	for _, limit := range []int{0, 100, 2} {
		got, total = hist(store.HistoryQuery{Since: at(1), Count: 2, TotalLimit: limit})
		eq(t, fmt.Sprintf("since, limit %d", limit), got, []string{"Patient/p1/3", "Patient/p2/2", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1"})
		if want := map[int]int{0: 5, 100: 5, 2: -1}[limit]; total != want {
			t.Errorf("since, limit %d: total %d, want %d", limit, total, want)
		}
		got, _ = hist(store.HistoryQuery{Since: at(1), Count: 1, TotalLimit: limit,
			Filter: &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}, "Observation": {}}}})
		eq(t, fmt.Sprintf("since without Observation, limit %d", limit), got, []string{"Patient/p1/3", "Patient/p2/2", "Patient/p1/2", "Patient/p2/1"})
		// An absent type hidden: both types visible, one with more
		// versions since T than the limit, one with fewer.
		got, _ = hist(store.HistoryQuery{Since: at(1), Count: 2, TotalLimit: limit,
			Filter: &store.AccessFilter{Types: map[string][]store.AccessRule{"*": {{}}, "Encounter": {}}}})
		eq(t, fmt.Sprintf("since without Encounter, limit %d", limit), got, []string{"Patient/p1/3", "Patient/p2/2", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1"})
		got, _ = hist(store.HistoryQuery{Type: "Patient", Since: at(2), Count: 1, TotalLimit: limit})
		eq(t, fmt.Sprintf("type since, limit %d", limit), got, []string{"Patient/p1/3", "Patient/p2/2", "Patient/p1/2"})
	}

	p, err := s.History(ctx, store.HistoryQuery{Type: "Patient", ID: "p2"})
	if err != nil || len(p.Versions) != 2 || !p.Versions[0].Deleted || p.Versions[0].Method != "PUT" || p.Versions[1].Deleted {
		t.Fatalf("deleted marker in history: %+v %v", p, err)
	}
	// Paging is stable while new versions are written.
	first, err := s.History(ctx, store.HistoryQuery{Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, &store.Write{Type: "Patient", ID: "p1", Version: 4, LastUpdated: at(10), Method: "PUT", Body: body("Patient", "p1", 4)})
	second, err := s.History(ctx, store.HistoryQuery{Count: 3, Before: first.Next})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, v := range append(first.Versions, second.Versions...) {
		all = append(all, fmt.Sprintf("%s/%s/%d", v.Type, v.ID, v.VersionID))
	}
	eq(t, "stable history paging", all, []string{"Patient/p1/3", "Patient/p2/2", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"})
	if second.Next != "" {
		t.Errorf("second page has next %q", second.Next)
	}
	// Default count.
	p, err = s.History(ctx, store.HistoryQuery{})
	if err != nil || len(p.Versions) != 7 || p.Next != "" {
		t.Fatalf("default count: %d %q %v", len(p.Versions), p.Next, err)
	}
}

// testAccessFilterExclusive: an exclusive compartment (writes in a
// patient's context) holds only the resources that reference Patient/a and
// no other Patient through a compartment parameter, and of the Patients
// only a itself, linking to no other; in the legacy and per-type forms, for
// one type and at system level.
func testAccessFilterExclusive(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Patient", ID: "c", Index: store.Index{References: []store.ReferenceRow{ref("link", "Patient", "a")}}},
		&store.Write{Type: "Patient", ID: "d", Index: store.Index{References: []store.ReferenceRow{ref("link", "Patient", "a"), ref("link", "Patient", "b")}}},
		&store.Write{Type: "Observation", ID: "oa", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a"), ref("performer", "Practitioner", "dr")}}},
		&store.Write{Type: "Observation", ID: "oaa", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a"), ref("performer", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "oba", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b"), ref("performer", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "oab", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a"), ref("performer", "Patient", "b")}}},
		&store.Write{Type: "Observation", ID: "oga", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Group", "g"), ref("performer", "Patient", "a")}}},
		// Another Patient through a parameter outside the compartment does
		// not count.
		&store.Write{Type: "Observation", ID: "oafocus", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a"), ref("focus", "Patient", "b")}}},
		&store.Write{Type: "Encounter", ID: "ea", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Practitioner", ID: "dr"},
	)
	shared := compartment("a")
	excl := compartment("a")
	excl.Compartment.Exclusive = true
	q := func(q *store.Query) []string { return sorted(refs(search(t, s, q).Matches)) }
	eq(t, "shared observations", q(&store.Query{Type: "Observation", Filter: shared}),
		[]string{"Observation/oa", "Observation/oaa", "Observation/oab", "Observation/oafocus", "Observation/oba", "Observation/oga"})
	eq(t, "exclusive observations", q(&store.Query{Type: "Observation", Filter: excl}),
		[]string{"Observation/oa", "Observation/oaa", "Observation/oafocus", "Observation/oga"})
	eq(t, "shared patients", q(&store.Query{Type: "Patient", Filter: shared}), []string{"Patient/a", "Patient/c", "Patient/d"})
	eq(t, "exclusive patients", q(&store.Query{Type: "Patient", Filter: excl}), []string{"Patient/a"})
	eq(t, "exclusive practitioners", q(&store.Query{Type: "Practitioner", Filter: excl}), []string{})
	wantAll := []string{"Encounter/ea", "Observation/oa", "Observation/oaa", "Observation/oafocus", "Observation/oga", "Patient/a"}
	eq(t, "exclusive system level", q(&store.Query{Filter: excl}), wantAll)
	pt := perType("a", map[string][]store.AccessRule{"*": inComp})
	pt.Compartment.Exclusive = true
	eq(t, "exclusive per type", q(&store.Query{Type: "Observation", Filter: pt}),
		[]string{"Observation/oa", "Observation/oaa", "Observation/oafocus", "Observation/oga"})
	eq(t, "exclusive per type system level", q(&store.Query{Filter: pt}), wantAll)
	// A linking Patient is excluded even when a links back to it.
	createAll(t, s, &store.Write{Type: "Patient", ID: "a", Version: 2, Index: store.Index{References: []store.ReferenceRow{ref("link", "Patient", "c")}}})
	eq(t, "exclusive: own record linking another", q(&store.Query{Type: "Patient", Filter: excl}), []string{})
	eq(t, "shared: own record linking another", q(&store.Query{Type: "Patient", Filter: shared}), []string{"Patient/a", "Patient/c", "Patient/d"})
}

// testQueryCompartment: Query.Compartment restricts matches to one
// compartment (compartment search, $everything) on top of the access
// filters, at type and system level, with totals and paging.
func testQueryCompartment(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Patient", ID: "c", Index: store.Index{References: []store.ReferenceRow{ref("link", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "oa", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "ob", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b")}}},
		&store.Write{Type: "Observation", ID: "oba", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b"), ref("performer", "Patient", "a")}}},
		// focus is not a compartment parameter.
		&store.Write{Type: "Observation", ID: "ofocus", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b"), ref("focus", "Patient", "a")}}},
		&store.Write{Type: "Encounter", ID: "ea", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		// Practitioner is not in the compartment even when it references a.
		&store.Write{Type: "Practitioner", ID: "dr", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
	)
	ca := compartment("a").Compartment
	q := func(q *store.Query) []string { return sorted(refs(search(t, s, q).Matches)) }
	eq(t, "observations of a", q(&store.Query{Type: "Observation", Compartment: ca}), []string{"Observation/oa", "Observation/oba"})
	eq(t, "patients of a", q(&store.Query{Type: "Patient", Compartment: ca}), []string{"Patient/a", "Patient/c"})
	eq(t, "practitioners of a", q(&store.Query{Type: "Practitioner", Compartment: ca}), []string{})
	everything := []string{"Encounter/ea", "Observation/oa", "Observation/oba", "Patient/a", "Patient/c"}
	eq(t, "everything of a", q(&store.Query{Compartment: ca}), everything)
	eq(t, "everything of a, two types", q(&store.Query{Types: []string{"Observation", "Practitioner"}, Compartment: ca}), []string{"Observation/oa", "Observation/oba"})
	// Exclusive is ignored: oba is in a's compartment for a search.
	excl := *ca
	excl.Exclusive = true
	eq(t, "exclusive ignored", q(&store.Query{Type: "Observation", Compartment: &excl}), []string{"Observation/oa", "Observation/oba"})
	// With the criteria and with another patient's access filter.
	eq(t, "with criteria", q(&store.Query{Type: "Observation", Compartment: ca,
		Where: []store.Clause{one(store.Predicate{Param: "subject", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "b"}})}}),
		[]string{"Observation/oba"})
	eq(t, "b's filter, a's compartment", q(&store.Query{Type: "Observation", Compartment: ca, Filter: compartment("b")}), []string{"Observation/oba"})
	eq(t, "b's filter, everything of a", q(&store.Query{Compartment: ca, Filter: compartment("b")}), []string{"Observation/oba"})
	eq(t, "match filter", q(&store.Query{Compartment: ca, MatchFilter: perType("", map[string][]store.AccessRule{"Encounter": {{}}})}), []string{"Encounter/ea"})
	// Totals and paging through a snapshot keep the restriction; a
	// snapshot is not reused for another compartment.
	r := search(t, s, &store.Query{Compartment: ca, Count: 2})
	if r.Total != len(everything) || !r.HasMore || r.Snapshot == "" {
		t.Fatalf("first page: total %d, more %v, snapshot %q", r.Total, r.HasMore, r.Snapshot)
	}
	got := refs(r.Matches)
	for off := 2; off < len(everything); off += 2 {
		p := search(t, s, &store.Query{Compartment: ca, Count: 2, Offset: off, Snapshot: r.Snapshot})
		got = append(got, refs(p.Matches)...)
	}
	eq(t, "paged", sorted(got), everything)
	if _, err := s.Search(ctx, &store.Query{Compartment: compartment("b").Compartment, Count: 2, Offset: 2, Snapshot: r.Snapshot}); !errors.Is(err, store.ErrSnapshotExpired) {
		t.Errorf("snapshot of a's compartment used for b's: %v", err)
	}
}

func testHistoryFilter(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Observation", ID: "oa", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "ob", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b")}}},
		&store.Write{Type: "Practitioner", ID: "dr"},
	)
	f := compartment("a")
	p, err := s.History(ctx, store.HistoryQuery{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "filtered system history", sorted(refs(p.Versions)), []string{"Observation/oa", "Patient/a"})
	if p.Total != 2 {
		t.Errorf("filtered total %d", p.Total)
	}
	p, err = s.History(ctx, store.HistoryQuery{Type: "Observation", ID: "ob", Filter: f})
	if err != nil || len(p.Versions) != 0 || p.Total != 0 {
		t.Errorf("filtered instance history: %+v %v", p, err)
	}
	p, err = s.History(ctx, store.HistoryQuery{Type: "Practitioner", Filter: f})
	if err != nil || len(p.Versions) != 0 {
		t.Errorf("filtered type history: %+v %v", p, err)
	}
}

func compartment(id string) *store.AccessFilter {
	return &store.AccessFilter{Compartment: &store.Compartment{Type: "Patient", ID: id, Params: map[string][]string{
		"Observation": {"subject", "performer"},
		"Encounter":   {"subject"},
		"Patient":     {"link"},
	}}}
}

func testString(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "1", Index: store.Index{Strings: []store.StringRow{str("name", "Müller"), str("name", "Hans Peter")}}},
		&store.Write{Type: "Patient", ID: "2", Index: store.Index{Strings: []store.StringRow{str("name", "Mullins")}}},
		&store.Write{Type: "Patient", ID: "3", Index: store.Index{Strings: []store.StringRow{str("name", "Smith"), str("family", "Muller")}}},
		&store.Write{Type: "Organization", ID: "4", Index: store.Index{Strings: []store.StringRow{str("name", "Mull")}}},
	)
	m := func(v string, mode store.StringMode) store.Clause {
		return one(store.Predicate{Param: "name", String: &store.StringMatch{Value: v, Mode: mode}})
	}
	eq(t, "prefix", find(t, s, "Patient", m("mul", store.StringPrefix)), []string{"1", "2"})
	eq(t, "prefix full", find(t, s, "Patient", m("muller", store.StringPrefix)), []string{"1"})
	eq(t, "prefix second value", find(t, s, "Patient", m("hans p", store.StringPrefix)), []string{"1"})
	eq(t, "prefix no match", find(t, s, "Patient", m("peter", store.StringPrefix)), []string{})
	eq(t, "exact", find(t, s, "Patient", m("Müller", store.StringExact)), []string{"1"})
	eq(t, "exact case", find(t, s, "Patient", m("müller", store.StringExact)), []string{})
	eq(t, "exact not prefix", find(t, s, "Patient", m("Mül", store.StringExact)), []string{})
	eq(t, "contains", find(t, s, "Patient", m("ll", store.StringContains)), []string{"1", "2"})
	eq(t, "contains middle word", find(t, s, "Patient", m("pet", store.StringContains)), []string{"1"})
	eq(t, "contains none", find(t, s, "Patient", m("xyz", store.StringContains)), []string{})
	eq(t, "other param", find(t, s, "Patient", one(store.Predicate{Param: "family", String: &store.StringMatch{Value: "mu"}})), []string{"3"})
	eq(t, "other type", find(t, s, "Organization", m("mu", store.StringPrefix)), []string{"4"})
	// LIKE wildcards are literal.
	eq(t, "wildcards", find(t, s, "Patient", m("m%", store.StringPrefix)), []string{})
	eq(t, "wildcards contains", find(t, s, "Patient", m("_", store.StringContains)), []string{})
}

func testToken(t *testing.T, s store.Store) {
	loinc := "http://loinc.org"
	createAll(t, s,
		&store.Write{Type: "Observation", ID: "1", Index: store.Index{Tokens: []store.TokenRow{
			{Param: "code", System: loinc, Code: "1234-5", Text: store.NormalizeString("Body Weight")},
			{Param: "status", Code: "final"},
		}}},
		&store.Write{Type: "Observation", ID: "2", Index: store.Index{Tokens: []store.TokenRow{
			{Param: "code", System: "http://other", Code: "1234-5", Text: "height"},
			{Param: "status", Code: "preliminary"},
		}}},
		&store.Write{Type: "Observation", ID: "3", Index: store.Index{Tokens: []store.TokenRow{
			{Param: "code", Code: "1234-5"},
		}}},
		&store.Write{Type: "Observation", ID: "4", Index: store.Index{Tokens: []store.TokenRow{
			{Param: "code", System: loinc, Code: "9999-9"},
		}}},
		&store.Write{Type: "Patient", ID: "p", Index: store.Index{Tokens: []store.TokenRow{
			{Param: "identifier", System: "urn:mrn", Code: "M1"},
			{Param: store.OfTypeParam("identifier"), System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: store.OfTypeCode("MR", "M1")},
		}}},
	)
	tm := func(sys *string, code string) store.Clause {
		return one(store.Predicate{Param: "code", Token: &store.TokenMatch{System: sys, Code: code}})
	}
	eq(t, "code", find(t, s, "Observation", tm(nil, "1234-5")), []string{"1", "2", "3"})
	eq(t, "system|code", find(t, s, "Observation", tm(ptr(loinc), "1234-5")), []string{"1"})
	eq(t, "|code", find(t, s, "Observation", tm(ptr(""), "1234-5")), []string{"3"})
	eq(t, "system|", find(t, s, "Observation", tm(ptr(loinc), "")), []string{"1", "4"})
	eq(t, "case-sensitive", find(t, s, "Observation", tm(nil, "1234-5 ")), []string{})
	eq(t, ":text", find(t, s, "Observation", one(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: "body w", Text: true}})), []string{"1"})
	eq(t, ":text none", find(t, s, "Observation", one(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: "weight", Text: true}})), []string{})
	// :not also matches resources without any status.
	not := store.Clause{Negate: true, Any: []store.Predicate{{Param: "status", Token: &store.TokenMatch{Code: "final"}}}}
	eq(t, ":not", find(t, s, "Observation", not), []string{"2", "3", "4"})
	not2 := store.Clause{Negate: true, Any: []store.Predicate{{Param: "status", Token: &store.TokenMatch{Code: "final"}}, {Param: "status", Token: &store.TokenMatch{Code: "preliminary"}}}}
	eq(t, ":not a,b", find(t, s, "Observation", not2), []string{"3", "4"})
	eq(t, "identifier", find(t, s, "Patient", one(store.Predicate{Param: "identifier", Token: &store.TokenMatch{System: ptr("urn:mrn"), Code: "M1"}})), []string{"p"})
	ofType := func(code, value string) store.Clause {
		return one(store.Predicate{Param: "identifier", Token: &store.TokenMatch{OfType: true, System: ptr("http://terminology.hl7.org/CodeSystem/v2-0203"), Code: code, Value: value}})
	}
	eq(t, ":of-type", find(t, s, "Patient", ofType("MR", "M1")), []string{"p"})
	eq(t, ":of-type other value", find(t, s, "Patient", ofType("MR", "M2")), []string{})
	eq(t, ":of-type other type", find(t, s, "Patient", ofType("SS", "M1")), []string{})
}

func testReference(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Observation", ID: "1", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "2", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Group", "a")}}},
		&store.Write{Type: "Observation", ID: "3", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b")}}},
		&store.Write{Type: "Observation", ID: "4", Index: store.Index{References: []store.ReferenceRow{{Param: "subject", URL: "http://elsewhere/fhir/Patient/a"}}}},
		&store.Write{Type: "Questionnaire", ID: "q", Index: store.Index{References: []store.ReferenceRow{{Param: "derived-from", URL: "http://x.org/Questionnaire/base"}}}},
	)
	rm := func(m store.ReferenceMatch) store.Clause {
		return one(store.Predicate{Param: "subject", Reference: &m})
	}
	eq(t, "type+id", find(t, s, "Observation", rm(store.ReferenceMatch{TargetType: "Patient", TargetID: "a"})), []string{"1"})
	eq(t, "id any type", find(t, s, "Observation", rm(store.ReferenceMatch{TargetID: "a"})), []string{"1", "2"})
	eq(t, "url", find(t, s, "Observation", rm(store.ReferenceMatch{URL: "http://elsewhere/fhir/Patient/a"})), []string{"4"})
	eq(t, "relative url", find(t, s, "Observation", rm(store.ReferenceMatch{URL: "Patient/b"})), []string{"3"})
	eq(t, "below", find(t, s, "Questionnaire", one(store.Predicate{Param: "derived-from", Reference: &store.ReferenceMatch{URL: "http://x.org/Questionnaire", Below: true}})), []string{"q"})
	eq(t, "below none", find(t, s, "Questionnaire", one(store.Predicate{Param: "derived-from", Reference: &store.ReferenceMatch{URL: "http://y.org", Below: true}})), []string{})
}

func testDate(t *testing.T, s store.Store) {
	day := func(d string) store.DateRow {
		lo := ms(d + "T00:00:00Z")
		return store.DateRow{Param: "date", Lo: lo, Hi: lo + 86400000 - 1}
	}
	createAll(t, s,
		// d1: the whole day 2024-01-10
		&store.Write{Type: "Observation", ID: "d1", Index: store.Index{Dates: []store.DateRow{day("2024-01-10")}}},
		// d2: an instant 2024-01-10T12:00:00Z
		&store.Write{Type: "Observation", ID: "d2", Index: store.Index{Dates: []store.DateRow{{Param: "date", Lo: ms("2024-01-10T12:00:00Z"), Hi: ms("2024-01-10T12:00:00Z")}}}},
		// d3: a period 2024-01-09 .. 2024-01-11 (whole days)
		&store.Write{Type: "Observation", ID: "d3", Index: store.Index{Dates: []store.DateRow{{Param: "date", Lo: ms("2024-01-09T00:00:00Z"), Hi: ms("2024-01-12T00:00:00Z") - 1}}}},
		// d4: open-ended period starting 2024-01-11
		&store.Write{Type: "Observation", ID: "d4", Index: store.Index{Dates: []store.DateRow{{Param: "date", Lo: ms("2024-01-11T00:00:00Z"), Hi: store.MaxTime}}}},
		// d5: 2023
		&store.Write{Type: "Observation", ID: "d5", Index: store.Index{Dates: []store.DateRow{day("2023-06-01")}}},
		// d6: no date
		&store.Write{Type: "Observation", ID: "d6"},
	)
	// Search value 2024-01-10 (a whole day).
	lo, hi := float64(ms("2024-01-10T00:00:00Z")), float64(ms("2024-01-11T00:00:00Z")-1)
	q := func(p store.Prefix) []string {
		rm := &store.RangeMatch{Prefix: p, Lo: lo, Hi: hi, ApLo: lo - 86400000, ApHi: hi + 86400000}
		return find(t, s, "Observation", one(store.Predicate{Param: "date", Date: rm}))
	}
	eq(t, "eq", q(store.PrefixEq), []string{"d1", "d2"})
	eq(t, "empty prefix = eq", q(""), []string{"d1", "d2"})
	eq(t, "ne", q(store.PrefixNe), []string{"d3", "d4", "d5"})
	eq(t, "gt", q(store.PrefixGt), []string{"d3", "d4"})
	eq(t, "lt", q(store.PrefixLt), []string{"d3", "d5"})
	eq(t, "ge", q(store.PrefixGe), []string{"d1", "d2", "d3", "d4"})
	eq(t, "le", q(store.PrefixLe), []string{"d1", "d2", "d3", "d5"})
	eq(t, "sa", q(store.PrefixSa), []string{"d4"})
	eq(t, "eb", q(store.PrefixEb), []string{"d5"})
	eq(t, "ap", q(store.PrefixAp), []string{"d1", "d2", "d3", "d4"})
	// Boundaries are inclusive, to the millisecond.
	edge := float64(ms("2024-01-10T12:00:00Z"))
	at := func(p store.Prefix, lo, hi float64) []string {
		return find(t, s, "Observation", one(store.Predicate{Param: "date", Date: &store.RangeMatch{Prefix: p, Lo: lo, Hi: hi}}))
	}
	eq(t, "eq instant", at(store.PrefixEq, edge, edge), []string{"d2"})
	eq(t, "ge instant", at(store.PrefixGe, edge, edge), []string{"d1", "d2", "d3", "d4"})
	eq(t, "gt instant", at(store.PrefixGt, edge, edge), []string{"d1", "d3", "d4"})
	eq(t, "le instant", at(store.PrefixLe, edge, edge), []string{"d1", "d2", "d3", "d5"})
	eq(t, "lt instant", at(store.PrefixLt, edge, edge), []string{"d1", "d3", "d5"})
	eq(t, "sa just before", at(store.PrefixSa, edge-1, edge-1), []string{"d2", "d4"})
	eq(t, "eb just after", at(store.PrefixEb, edge+1, edge+1), []string{"d2", "d5"})
}

func testNumberQuantity(t *testing.T, s store.Store) {
	ucum := "http://unitsofmeasure.org"
	createAll(t, s,
		&store.Write{Type: "RiskAssessment", ID: "n1", Index: store.Index{Numbers: []store.NumberRow{{Param: "probability", Lo: 0.5, Hi: 0.5}}}},
		&store.Write{Type: "RiskAssessment", ID: "n2", Index: store.Index{Numbers: []store.NumberRow{{Param: "probability", Lo: 0.2, Hi: 0.8}}}},
		&store.Write{Type: "RiskAssessment", ID: "n3", Index: store.Index{Numbers: []store.NumberRow{{Param: "probability", Lo: 1.5, Hi: 1.5}}}},
		&store.Write{Type: "Observation", ID: "q1", Index: store.Index{Quantities: []store.QuantityRow{{Param: "value-quantity", System: ucum, Code: "kg", Unit: "kilogram", Lo: 70, Hi: 70}}}},
		&store.Write{Type: "Observation", ID: "q2", Index: store.Index{Quantities: []store.QuantityRow{{Param: "value-quantity", System: ucum, Code: "[lb_av]", Unit: "lbs", Lo: 70, Hi: 70}}}},
		&store.Write{Type: "Observation", ID: "q3", Index: store.Index{Quantities: []store.QuantityRow{{Param: "value-quantity", Unit: "kg", Lo: 70.4, Hi: 70.4}}}},
		&store.Write{Type: "Observation", ID: "q4", Index: store.Index{Quantities: []store.QuantityRow{{Param: "value-quantity", System: ucum, Code: "kg", Lo: 90, Hi: 90}}}},
	)
	num := func(p store.Prefix, lo, hi float64) []string {
		return find(t, s, "RiskAssessment", one(store.Predicate{Param: "probability", Number: &store.RangeMatch{Prefix: p, Lo: lo, Hi: hi, ApLo: lo * 0.9, ApHi: hi * 1.1}}))
	}
	eq(t, "number eq 0.5", num(store.PrefixEq, 0.45, 0.55), []string{"n1"})
	eq(t, "number gt 1", num(store.PrefixGt, 0.95, 1.05), []string{"n3"})
	eq(t, "number lt 0.5", num(store.PrefixLt, 0.45, 0.55), []string{"n2"})
	eq(t, "number ge 0.5", num(store.PrefixGe, 0.45, 0.55), []string{"n1", "n2", "n3"})
	eq(t, "number ne 0.5", num(store.PrefixNe, 0.45, 0.55), []string{"n2", "n3"})
	eq(t, "number ap 0.75", num(store.PrefixAp, 0.745, 0.755), []string{"n2"})
	qty := func(sys, code string, p store.Prefix, lo, hi float64) []string {
		return find(t, s, "Observation", one(store.Predicate{Param: "value-quantity", Quantity: &store.QuantityMatch{System: sys, Code: code,
			Range: store.RangeMatch{Prefix: p, Lo: lo, Hi: hi, ApLo: lo * 0.9, ApHi: hi * 1.1}}}))
	}
	eq(t, "qty 70 any unit", qty("", "", store.PrefixEq, 69.5, 70.5), []string{"q1", "q2", "q3"})
	eq(t, "qty 70 ucum|kg", qty(ucum, "kg", store.PrefixEq, 69.5, 70.5), []string{"q1"})
	eq(t, "qty 70 ||kg (code or unit)", qty("", "kg", store.PrefixEq, 69.5, 70.5), []string{"q1", "q3"})
	eq(t, "qty 70 ||lbs (unit)", qty("", "lbs", store.PrefixEq, 69.5, 70.5), []string{"q2"})
	eq(t, "qty gt 80 kg", qty(ucum, "kg", store.PrefixGt, 79.5, 80.5), []string{"q4"})
	eq(t, "qty ap 85", qty("", "", store.PrefixAp, 84.5, 85.5), []string{"q4"})
}

func testURI(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "ValueSet", ID: "1", Index: store.Index{URIs: []store.URIRow{{Param: "url", URI: "http://acme.org/fhir/ValueSet/123"}}}},
		&store.Write{Type: "ValueSet", ID: "2", Index: store.Index{URIs: []store.URIRow{{Param: "url", URI: "http://acme.org/fhir/ValueSet/124"}}}},
		&store.Write{Type: "ValueSet", ID: "3", Index: store.Index{URIs: []store.URIRow{{Param: "url", URI: "http://acme.org/fhir"}}}},
		&store.Write{Type: "ValueSet", ID: "4", Index: store.Index{URIs: []store.URIRow{{Param: "url", URI: "urn:oid:1.2.3"}}}},
	)
	u := func(m store.URIMatch) []string {
		return find(t, s, "ValueSet", one(store.Predicate{Param: "url", URI: &m}))
	}
	eq(t, "exact", u(store.URIMatch{Value: "http://acme.org/fhir/ValueSet/123"}), []string{"1"})
	eq(t, "exact no prefix", u(store.URIMatch{Value: "http://acme.org/fhir/ValueSet"}), []string{})
	eq(t, "below", u(store.URIMatch{Value: "http://acme.org/fhir/ValueSet", Below: true}), []string{"1", "2"})
	eq(t, "above", u(store.URIMatch{Value: "http://acme.org/fhir/ValueSet/123/_history/5", Above: true}), []string{"1", "3"})
	eq(t, "urn", u(store.URIMatch{Value: "urn:oid:1.2.3"}), []string{"4"})
}

func testIDAndLastUpdated(t *testing.T, s store.Store) {
	for i, id := range []string{"a", "b", "c"} {
		put(t, s, &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: t0.Add(time.Duration(i) * time.Hour), Method: "POST", Body: body("Patient", id, 1)})
	}
	eq(t, "_id", find(t, s, "Patient", one(store.Predicate{Param: "_id", ID: ptr("b")})), []string{"b"})
	eq(t, "_id a,c", find(t, s, "Patient", store.Clause{Any: []store.Predicate{{Param: "_id", ID: ptr("c")}, {Param: "_id", ID: ptr("a")}}}), []string{"a", "c"})
	eq(t, "_id other type", find(t, s, "Observation", one(store.Predicate{Param: "_id", ID: ptr("b")})), []string{})
	lu := func(p store.Prefix, tm time.Time) []string {
		v := float64(tm.UnixMilli())
		return find(t, s, "Patient", one(store.Predicate{Param: "_lastUpdated", LastUpdated: &store.RangeMatch{Prefix: p, Lo: v, Hi: v + 999}}))
	}
	eq(t, "_lastUpdated eq", lu(store.PrefixEq, t0.Add(time.Hour)), []string{"b"})
	eq(t, "_lastUpdated gt", lu(store.PrefixGt, t0.Add(time.Hour)), []string{"c"})
	eq(t, "_lastUpdated ge", lu(store.PrefixGe, t0.Add(time.Hour)), []string{"b", "c"})
	eq(t, "_lastUpdated lt", lu(store.PrefixLt, t0.Add(time.Hour)), []string{"a"})
}

func testMissing(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "1", Index: store.Index{Dates: []store.DateRow{{Param: "birthdate", Lo: 1, Hi: 2}}}},
		&store.Write{Type: "Patient", ID: "2", Index: store.Index{Tokens: []store.TokenRow{tok("gender", "", "female"), {Param: "cv$1", Group: 1, Code: "x"}},
			Numbers: []store.NumberRow{{Param: "cv$2", Group: 1, Lo: 1, Hi: 1}}}},
		&store.Write{Type: "Patient", ID: "3"},
	)
	miss := func(param string, v bool) []string {
		return find(t, s, "Patient", one(store.Predicate{Param: param, Missing: &v}))
	}
	eq(t, "birthdate:missing=true", miss("birthdate", true), []string{"2", "3"})
	eq(t, "birthdate:missing=false", miss("birthdate", false), []string{"1"})
	eq(t, "gender:missing=true", miss("gender", true), []string{"1", "3"})
	eq(t, "gender:missing=false", miss("gender", false), []string{"2"})
	eq(t, "composite:missing=true", miss("cv", true), []string{"1", "3"})
	eq(t, "composite:missing=false", miss("cv", false), []string{"2"})
}

func testOrAnd(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Observation", ID: "1", Index: store.Index{Tokens: []store.TokenRow{tok("code", "s", "a"), tok("status", "", "final")}}},
		&store.Write{Type: "Observation", ID: "2", Index: store.Index{Tokens: []store.TokenRow{tok("code", "s", "b"), tok("status", "", "final")}}},
		&store.Write{Type: "Observation", ID: "3", Index: store.Index{Tokens: []store.TokenRow{tok("code", "s", "c"), tok("status", "", "amended")},
			Strings: []store.StringRow{str("note", "x")}}},
	)
	code := func(c string) store.Predicate {
		return store.Predicate{Param: "code", Token: &store.TokenMatch{Code: c}}
	}
	status := func(c string) store.Predicate {
		return store.Predicate{Param: "status", Token: &store.TokenMatch{Code: c}}
	}
	eq(t, "a,c", find(t, s, "Observation", store.Clause{Any: []store.Predicate{code("a"), code("c")}}), []string{"1", "3"})
	eq(t, "a,c & final", find(t, s, "Observation", store.Clause{Any: []store.Predicate{code("a"), code("c")}}, one(status("final"))), []string{"1"})
	eq(t, "mixed OR", find(t, s, "Observation", store.Clause{Any: []store.Predicate{code("b"), {Param: "note", String: &store.StringMatch{Value: "x"}}, {Param: "_id", ID: ptr("1")}}}), []string{"1", "2", "3"})
	eq(t, "empty clause", find(t, s, "Observation", store.Clause{}), []string{})
}

func testChain(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a", Index: store.Index{Strings: []store.StringRow{str("name", "Alice")}}},
		&store.Write{Type: "Patient", ID: "b", Index: store.Index{Strings: []store.StringRow{str("name", "Bob")}}},
		&store.Write{Type: "Group", ID: "g", Index: store.Index{Strings: []store.StringRow{str("name", "Alice")}}},
		&store.Write{Type: "Observation", ID: "oa", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "ob", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b")}}},
		&store.Write{Type: "Observation", ID: "og", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Group", "g")}}},
		&store.Write{Type: "Observation", ID: "ox", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "missing")}}},
	)
	chain := func(target, name string) store.Clause {
		return one(store.Predicate{Param: "subject", Chain: &store.Chain{TargetType: target,
			Where: one(store.Predicate{Param: "name", String: &store.StringMatch{Value: name}})}})
	}
	eq(t, "subject:Patient.name=ali", find(t, s, "Observation", chain("Patient", "ali")), []string{"oa"})
	eq(t, "subject.name=ali (any type)", find(t, s, "Observation", chain("", "ali")), []string{"oa", "og"})
	eq(t, "subject:Patient.name=zed", find(t, s, "Observation", chain("Patient", "zed")), []string{})
	// Deleted targets do not match.
	put(t, s, &store.Write{Type: "Patient", ID: "b", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true})
	eq(t, "deleted target", find(t, s, "Observation", chain("Patient", "bo")), []string{})
	// Chain with _id on the target.
	eq(t, "subject:Patient._id", find(t, s, "Observation", one(store.Predicate{Param: "subject", Chain: &store.Chain{TargetType: "Patient",
		Where: one(store.Predicate{Param: "_id", ID: ptr("a")})}})), []string{"oa"})
}

func testHas(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Patient", ID: "c"},
		&store.Write{Type: "Observation", ID: "oa", Index: store.Index{References: []store.ReferenceRow{ref("patient", "Patient", "a")}, Tokens: []store.TokenRow{tok("code", "s", "x")}}},
		&store.Write{Type: "Observation", ID: "ob", Index: store.Index{References: []store.ReferenceRow{ref("patient", "Patient", "b")}, Tokens: []store.TokenRow{tok("code", "s", "y")}}},
		&store.Write{Type: "Condition", ID: "cc", Index: store.Index{References: []store.ReferenceRow{ref("patient", "Patient", "c")}, Tokens: []store.TokenRow{tok("code", "s", "x")}}},
	)
	has := func(typ, code string) store.Clause {
		return one(store.Predicate{Has: &store.Has{Type: typ, RefParam: "patient", Where: one(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: code}})}})
	}
	eq(t, "_has:Observation:patient:code=x", find(t, s, "Patient", has("Observation", "x")), []string{"a"})
	eq(t, "_has:Condition:patient:code=x", find(t, s, "Patient", has("Condition", "x")), []string{"c"})
	eq(t, "_has:Observation:patient:code=x,y", find(t, s, "Patient", one(store.Predicate{Has: &store.Has{Type: "Observation", RefParam: "patient",
		Where: store.Clause{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{Code: "x"}}, {Param: "code", Token: &store.TokenMatch{Code: "y"}}}}}})), []string{"a", "b"})
	eq(t, "two _has ANDed", find(t, s, "Patient", has("Observation", "x"), has("Condition", "x")), []string{})
	eq(t, "system level _has", ids(search(t, s, &store.Query{Where: []store.Clause{has("Observation", "y")}}).Matches), []string{"b"})
	put(t, s, &store.Write{Type: "Observation", ID: "oa", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true})
	eq(t, "deleted referrer", find(t, s, "Patient", has("Observation", "x")), []string{})
	// A deleted referenced resource is no match, though its referrer's
	// index rows still point at it (found by (type, id), then tested).
	eq(t, "before its target's deletion", find(t, s, "Patient", has("Observation", "y")), []string{"b"})
	put(t, s, &store.Write{Type: "Patient", ID: "b", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true})
	eq(t, "deleted target", find(t, s, "Patient", has("Observation", "y")), []string{})
	if n := search(t, s, &store.Query{Type: "Patient", Where: []store.Clause{has("Observation", "y")}, Count: -1}).Total; n != 0 {
		t.Errorf("deleted target: total %d, want 0", n)
	}
}

func testComposite(t *testing.T, s store.Store) {
	comp := func(grp int32, code string, v float64) ([]store.TokenRow, []store.QuantityRow) {
		return []store.TokenRow{{Param: "code-value-quantity$1", Group: grp, System: "s", Code: code}},
			[]store.QuantityRow{{Param: "code-value-quantity$2", Group: grp, Code: "mm[Hg]", Lo: v, Hi: v}}
	}
	t1, q1 := comp(1, "systolic", 120)
	t2, q2 := comp(2, "diastolic", 80)
	t3, q3 := comp(1, "systolic", 80)
	t4, q4 := comp(2, "diastolic", 120)
	createAll(t, s,
		&store.Write{Type: "Observation", ID: "1", Index: store.Index{Tokens: append(t1, t2...), Quantities: append(q1, q2...)}},
		&store.Write{Type: "Observation", ID: "2", Index: store.Index{Tokens: append(t3, t4...), Quantities: append(q3, q4...)}},
	)
	cv := func(code string, v float64) store.Clause {
		return one(store.Predicate{Param: "code-value-quantity", Composite: []store.Predicate{
			{Param: "code-value-quantity$1", Token: &store.TokenMatch{Code: code}},
			{Param: "code-value-quantity$2", Quantity: &store.QuantityMatch{Range: store.RangeMatch{Prefix: store.PrefixEq, Lo: v - 0.5, Hi: v + 0.5}}},
		}})
	}
	eq(t, "systolic 120", find(t, s, "Observation", cv("systolic", 120)), []string{"1"})
	eq(t, "systolic 80", find(t, s, "Observation", cv("systolic", 80)), []string{"2"})
	eq(t, "diastolic 120", find(t, s, "Observation", cv("diastolic", 120)), []string{"2"})
	eq(t, "systolic 90", find(t, s, "Observation", cv("systolic", 90)), []string{})
	eq(t, "OR of composites", find(t, s, "Observation", store.Clause{Any: append(cv("systolic", 120).Any, cv("systolic", 80).Any...)}), []string{"1", "2"})
}

func testSort(t *testing.T, s store.Store) {
	d := func(day string) []store.DateRow {
		lo := ms(day + "T00:00:00Z")
		return []store.DateRow{{Param: "date", Lo: lo, Hi: lo + 86400000 - 1}}
	}
	createAll(t, s,
		&store.Write{Type: "Observation", ID: "e", Index: store.Index{Dates: d("2024-01-03"), Strings: []store.StringRow{str("name", "beta")}, Tokens: []store.TokenRow{tok("status", "", "b")}}},
		&store.Write{Type: "Observation", ID: "c", Index: store.Index{Dates: append(d("2024-01-01"), d("2024-01-05")...), Strings: []store.StringRow{str("name", "Alpha")}, Tokens: []store.TokenRow{tok("status", "", "a")}}},
		&store.Write{Type: "Observation", ID: "a", Index: store.Index{Dates: d("2024-01-02"), Strings: []store.StringRow{str("name", "beta")}, Tokens: []store.TokenRow{tok("status", "", "a")}}},
		&store.Write{Type: "Observation", ID: "d"},
		&store.Write{Type: "Observation", ID: "b", Index: store.Index{Dates: d("2024-01-03"), Strings: []store.StringRow{str("name", "gamma")}, Tokens: []store.TokenRow{tok("status", "", "c")}}},
	)
	srt := func(keys ...store.SortKey) []string {
		return ids(search(t, s, &store.Query{Type: "Observation", Sort: keys}).Matches)
	}
	eq(t, "default (insertion)", srt(), []string{"e", "c", "a", "d", "b"})
	eq(t, "date asc (min lo, ties by insertion, missing last)", srt(store.SortKey{Param: "date", Type: "date"}), []string{"c", "a", "e", "b", "d"})
	eq(t, "date desc (max hi)", srt(store.SortKey{Param: "date", Type: "date", Desc: true}), []string{"c", "e", "b", "a", "d"})
	eq(t, "_id", srt(store.SortKey{Param: "_id"}), []string{"a", "b", "c", "d", "e"})
	eq(t, "_id desc", srt(store.SortKey{Param: "_id", Desc: true}), []string{"e", "d", "c", "b", "a"})
	eq(t, "name, -date", srt(store.SortKey{Param: "name", Type: "string"}, store.SortKey{Param: "date", Type: "date", Desc: true}), []string{"c", "e", "a", "b", "d"})
	eq(t, "status, _id desc", srt(store.SortKey{Param: "status", Type: "token"}, store.SortKey{Param: "_id", Desc: true}), []string{"c", "a", "e", "b", "d"})
	// _lastUpdated
	for i, id := range []string{"e", "c", "a"} {
		r, err := s.Read(ctx, "Observation", id)
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, &store.Write{Type: "Observation", ID: id, Version: 2, LastUpdated: t0.Add(time.Duration(3-i) * time.Minute), Method: "PUT", Body: r.Body})
	}
	eq(t, "_lastUpdated", srt(store.SortKey{Param: "_lastUpdated"}), []string{"d", "b", "a", "c", "e"})
	eq(t, "-_lastUpdated", srt(store.SortKey{Param: "_lastUpdated", Desc: true}), []string{"e", "c", "a", "d", "b"})
	if _, err := s.Search(ctx, &store.Query{Type: "Observation", Count: 10, Sort: []store.SortKey{{Param: "x", Type: "bogus"}}}); err == nil {
		t.Error("sort by unknown type: no error")
	}
}

func testSystemLevel(t *testing.T, s store.Store) {
	for i, r := range []string{"Patient/p", "Observation/o", "Encounter/e"} {
		typ, id, _ := strings.Cut(r, "/")
		put(t, s, &store.Write{Type: typ, ID: id, Version: 1, LastUpdated: t0.Add(time.Duration(3-i) * time.Minute), Method: "POST", Body: body(typ, id, 1),
			Index: store.Index{Tokens: []store.TokenRow{tok("_tag", "t", "x")}}})
	}
	all := search(t, s, &store.Query{})
	eq(t, "all types by last_updated", refs(all.Matches), []string{"Encounter/e", "Observation/o", "Patient/p"})
	some := search(t, s, &store.Query{Types: []string{"Patient", "Encounter"}})
	eq(t, "types", refs(some.Matches), []string{"Encounter/e", "Patient/p"})
	tag := search(t, s, &store.Query{Types: []string{"Patient", "Observation"}, Where: []store.Clause{one(store.Predicate{Param: "_tag", Token: &store.TokenMatch{Code: "x"}})}})
	eq(t, "types + _tag", refs(tag.Matches), []string{"Observation/o", "Patient/p"})
	if tag.Total != 2 {
		t.Errorf("total %d", tag.Total)
	}
}

func testTotals(t *testing.T, s store.Store) {
	var ws []*store.Write
	for i := range 7 {
		ws = append(ws, &store.Write{Type: "Patient", ID: fmt.Sprint(i)})
	}
	createAll(t, s, ws...)
	r, err := s.Search(ctx, &store.Query{Type: "Patient", Count: 0})
	if err != nil || r.Total != 7 || len(r.Matches) != 0 || r.Snapshot != "" {
		t.Fatalf("count only: %+v %v", r, err)
	}
	r, err = s.Search(ctx, &store.Query{Type: "Patient", Count: 3, Total: store.TotalNone})
	if err != nil || r.Total != -1 || len(r.Matches) != 3 || !r.HasMore {
		t.Fatalf("total none: %+v %v", r, err)
	}
	r, err = s.Search(ctx, &store.Query{Type: "Patient", Count: 10})
	if err != nil || r.Total != 7 || len(r.Matches) != 7 || r.HasMore || r.Snapshot != "" {
		t.Fatalf("one page: %+v %v", r, err)
	}
	r, err = s.Search(ctx, &store.Query{Type: "Patient", Count: 3, Offset: 5})
	if err != nil || r.Total != 7 || len(r.Matches) != 2 || r.HasMore {
		t.Fatalf("offset: %+v %v", r, err)
	}
	if _, err := s.Search(ctx, &store.Query{Type: "Patient", Count: 3, Snapshot: "nope", Offset: 3}); !errors.Is(err, store.ErrSnapshotExpired) {
		t.Fatalf("unknown snapshot: %v", err)
	}
}

func testPaging(t *testing.T, s store.Store) {
	var ws []*store.Write
	for i := range 25 {
		ws = append(ws, &store.Write{Type: "Observation", ID: fmt.Sprintf("o%02d", i), Index: store.Index{
			Tokens: []store.TokenRow{tok("code", "s", "c")},
			Dates:  []store.DateRow{{Param: "date", Lo: int64(1000 - i), Hi: int64(1000 - i)}}}})
	}
	createAll(t, s, ws...)
	q := &store.Query{Type: "Observation", Count: 10, Where: []store.Clause{one(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: "c"}})},
		Sort: []store.SortKey{{Param: "date", Type: "date"}}}
	first, err := s.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if first.Total != 25 || !first.HasMore || first.Snapshot == "" || len(first.Matches) != 10 {
		t.Fatalf("first page: total %d more %v snap %q n %d", first.Total, first.HasMore, first.Snapshot, len(first.Matches))
	}
	// Writers between pages: new matches that would sort first, and a delete.
	put(t, s, &store.Write{Type: "Observation", ID: "o05", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true}) // on page 2 (date order: o24..o00)
	got := ids(first.Matches)
	next := *q
	next.Snapshot = first.Snapshot
	added := 0
	for off := 10; ; off += 10 {
		for range 5 {
			create(t, s, "Observation", fmt.Sprintf("new%02d", added), store.Index{Tokens: []store.TokenRow{tok("code", "s", "c")}, Dates: []store.DateRow{{Param: "date", Lo: int64(added), Hi: int64(added)}}})
			added++
		}
		next.Offset = off
		p, err := s.Search(ctx, &next)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 25 {
			t.Errorf("snapshot total %d", p.Total)
		}
		got = append(got, ids(p.Matches)...)
		if !p.HasMore {
			break
		}
		if off > 100 {
			t.Fatal("paging does not end")
		}
	}
	var want []string
	for i := 24; i >= 0; i-- {
		if i != 5 {
			want = append(want, fmt.Sprintf("o%02d", i))
		}
	}
	eq(t, "stable pages", got, want)
	// A fresh search sees the new state.
	fresh, err := s.Search(ctx, &store.Query{Type: "Observation", Count: 0, Where: q.Where})
	if err != nil || fresh.Total != 24+added {
		t.Fatalf("fresh total: %+v %v", fresh, err)
	}
	// A later page without a snapshot (an expired one re-runs the search
	// at its offset), and one past the end: the matches from there in
	// order, and the total of all of them.
	var all []string
	for i := range added {
		all = append(all, fmt.Sprintf("new%02d", i))
	}
	all = append(all, want...)
	for _, off := range []int{10, len(all) - 3, len(all) + 5} {
		p, err := s.Search(ctx, &store.Query{Type: "Observation", Count: 10, Offset: off, Where: q.Where, Sort: q.Sort})
		if err != nil {
			t.Fatal(err)
		}
		from, to := min(off, len(all)), min(off+10, len(all))
		eq(t, fmt.Sprintf("page at %d without a snapshot", off), ids(p.Matches), all[from:to])
		if p.Total != len(all) || p.HasMore != (to < len(all)) {
			t.Errorf("page at %d without a snapshot: total %d more %v, want %d %v", off, p.Total, p.HasMore, len(all), to < len(all))
		}
	}
}

// cappable is implemented by stores built on sqlgen.
type cappable interface{ Engine() *sqlgen.Engine }

func testPagingPastCap(t *testing.T, s store.Store) {
	c, ok := s.(cappable)
	if !ok {
		t.Skip("store has no sqlgen engine")
	}
	c.Engine().Cap = 12
	var ws []*store.Write
	for i := range 30 {
		ws = append(ws, &store.Write{Type: "Patient", ID: fmt.Sprintf("p%02d", i), Index: store.Index{Strings: []store.StringRow{str("name", fmt.Sprintf("n%02d", 29-i))}}})
	}
	createAll(t, s, ws...)
	q := &store.Query{Type: "Patient", Count: 5, Sort: []store.SortKey{{Param: "name", Type: "string"}},
		Where: []store.Clause{one(store.Predicate{Param: "name", String: &store.StringMatch{Value: "n"}})}}
	first := search(t, s, q)
	if first.Total != 30 || first.Snapshot == "" || !first.HasMore {
		t.Fatalf("first: %+v", first)
	}
	got := ids(first.Matches)
	// Later pages repeat the query with the snapshot.
	nq := *q
	nq.Snapshot = first.Snapshot
	next := &nq
	for off := 5; ; off += 5 {
		next.Offset = off
		p, err := s.Search(ctx, next)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(p.Matches)...)
		if !p.HasMore {
			break
		}
		if off > 100 {
			t.Fatal("no end")
		}
	}
	var want []string
	for i := 29; i >= 0; i-- {
		want = append(want, fmt.Sprintf("p%02d", i))
	}
	eq(t, "pages past the cap", got, want)
	// Deep offset without snapshot.
	deep := search(t, s, &store.Query{Type: "Patient", Count: 5, Offset: 25, Sort: q.Sort})
	eq(t, "deep offset", ids(deep.Matches), []string{"p04", "p03", "p02", "p01", "p00"})
	if deep.HasMore || deep.Total != 30 {
		t.Errorf("deep: more %v total %d", deep.HasMore, deep.Total)
	}
}

func incFixture(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Organization", ID: "org"},
		&store.Write{Type: "Practitioner", ID: "dr", Index: store.Index{References: []store.ReferenceRow{ref("organization", "Organization", "org")}}},
		&store.Write{Type: "Patient", ID: "a", Index: store.Index{References: []store.ReferenceRow{ref("general-practitioner", "Practitioner", "dr")}}},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Observation", ID: "oa1", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a"), ref("performer", "Practitioner", "dr")}}},
		&store.Write{Type: "Observation", ID: "oa2", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "ob1", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "b"), ref("performer", "Practitioner", "dr")}}},
		&store.Write{Type: "Observation", ID: "ogone", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "gone")}}},
		&store.Write{Type: "Provenance", ID: "prov", Index: store.Index{References: []store.ReferenceRow{ref("target", "Observation", "oa1"), ref("target", "Patient", "a")}}},
	)
}

func testInclude(t *testing.T, s store.Store) {
	incFixture(t, s)
	obs := func(inc, rev []store.Include, where ...store.Clause) *store.SearchResult {
		return search(t, s, &store.Query{Type: "Observation", Include: inc, RevInclude: rev, Where: where})
	}
	r := obs([]store.Include{{SourceType: "Observation", Param: "subject"}}, nil)
	eq(t, "_include=Observation:subject", sorted(refs(r.Included)), []string{"Patient/a", "Patient/b"})
	r = obs([]store.Include{{SourceType: "Observation", Param: "*"}}, nil)
	eq(t, "_include=Observation:*", sorted(refs(r.Included)), []string{"Patient/a", "Patient/b", "Practitioner/dr"})
	r = obs([]store.Include{{SourceType: "Observation", Param: "*", TargetType: "Practitioner"}}, nil)
	eq(t, "_include=Observation:*:Practitioner", refs(r.Included), []string{"Practitioner/dr"})
	r = obs([]store.Include{{SourceType: "*", Param: "*", NotTargetTypes: []string{"Observation", "Patient"}}}, nil)
	eq(t, "every reference but to Patient and Observation", refs(r.Included), []string{"Practitioner/dr"})
	r = obs([]store.Include{{SourceType: "Patient", Param: "general-practitioner"}}, nil)
	eq(t, "include of another source type", refs(r.Included), []string{})
	r = obs(nil, []store.Include{{SourceType: "Provenance", Param: "target"}})
	eq(t, "_revinclude=Provenance:target", refs(r.Included), []string{"Provenance/prov"})
	// Matches are not repeated in Included.
	p := search(t, s, &store.Query{Type: "Patient", RevInclude: []store.Include{{SourceType: "Observation", Param: "subject"}, {SourceType: "Provenance", Param: "target"}}})
	eq(t, "patient revinclude", sorted(refs(p.Included)), []string{"Observation/oa1", "Observation/oa2", "Observation/ob1", "Provenance/prov"})
	p = search(t, s, &store.Query{Type: "Patient", Where: []store.Clause{one(store.Predicate{Param: "_id", ID: ptr("a")})},
		RevInclude: []store.Include{{SourceType: "Patient", Param: "*"}}})
	eq(t, "revinclude none", refs(p.Included), []string{})
	// Included resources are de-duplicated and only for the page.
	r = search(t, s, &store.Query{Type: "Observation", Count: 1, Include: []store.Include{{SourceType: "Observation", Param: "performer"}}})
	eq(t, "page include", refs(r.Included), []string{"Practitioner/dr"})
	// Deleted resources are not included.
	put(t, s, &store.Write{Type: "Practitioner", ID: "dr", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true})
	r = obs([]store.Include{{SourceType: "Observation", Param: "performer"}}, nil)
	eq(t, "deleted not included", refs(r.Included), []string{})
}

func testIterate(t *testing.T, s store.Store) {
	incFixture(t, s)
	r := search(t, s, &store.Query{Type: "Observation", Where: []store.Clause{one(store.Predicate{Param: "_id", ID: ptr("oa2")})},
		Include: []store.Include{
			{SourceType: "Observation", Param: "subject"},
			{SourceType: "Patient", Param: "general-practitioner", Iterate: true},
			{SourceType: "Practitioner", Param: "organization", Iterate: true},
		}})
	eq(t, "iterate chain", refs(r.Included), []string{"Patient/a", "Practitioner/dr", "Organization/org"})
	r = search(t, s, &store.Query{Type: "Observation", Where: []store.Clause{one(store.Predicate{Param: "_id", ID: ptr("oa2")})},
		Include: []store.Include{
			{SourceType: "Observation", Param: "subject"},
			{SourceType: "Patient", Param: "general-practitioner"},
		}})
	eq(t, "no iterate", refs(r.Included), []string{"Patient/a"})
	// _include + _revinclude:iterate: patients of the observation, then all their observations.
	r = search(t, s, &store.Query{Type: "Observation", Where: []store.Clause{one(store.Predicate{Param: "_id", ID: ptr("oa2")})},
		Include:    []store.Include{{SourceType: "Observation", Param: "subject"}},
		RevInclude: []store.Include{{SourceType: "Observation", Param: "subject", Iterate: true}},
	})
	eq(t, "revinclude iterate", sorted(refs(r.Included)), []string{"Observation/oa1", "Patient/a"})
}

func testAccessFilter(t *testing.T, s store.Store) {
	incFixture(t, s)
	createAll(t, s, &store.Write{Type: "Encounter", ID: "ea", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}})
	f := compartment("a")
	r := search(t, s, &store.Query{Type: "Observation", Filter: f, Include: []store.Include{{SourceType: "Observation", Param: "*"}}})
	eq(t, "matches", ids(r.Matches), []string{"oa1", "oa2"})
	eq(t, "includes (Practitioner not in compartment)", refs(r.Included), []string{"Patient/a"})
	if r.Total != 2 {
		t.Errorf("total %d", r.Total)
	}
	c, err := s.Search(ctx, &store.Query{Type: "Observation", Filter: f})
	if err != nil || c.Total != 2 {
		t.Errorf("count: %+v %v", c, err)
	}
	eq(t, "patients", ids(search(t, s, &store.Query{Type: "Patient", Filter: f}).Matches), []string{"a"})
	eq(t, "practitioners", ids(search(t, s, &store.Query{Type: "Practitioner", Filter: f}).Matches), []string{})
	eq(t, "provenance (type not in params)", ids(search(t, s, &store.Query{Type: "Provenance", Filter: f}).Matches), []string{})
	all := search(t, s, &store.Query{Filter: f})
	eq(t, "system level", sorted(refs(all.Matches)), []string{"Encounter/ea", "Observation/oa1", "Observation/oa2", "Patient/a"})
	some := search(t, s, &store.Query{Types: []string{"Observation", "Practitioner"}, Filter: f})
	eq(t, "system level types", sorted(refs(some.Matches)), []string{"Observation/oa1", "Observation/oa2"})
	// Revinclude of invisible resources.
	p := search(t, s, &store.Query{Type: "Patient", Filter: f, RevInclude: []store.Include{{SourceType: "Provenance", Param: "target"}, {SourceType: "Observation", Param: "subject"}}})
	eq(t, "revinclude filtered", sorted(refs(p.Included)), []string{"Observation/oa1", "Observation/oa2"})
	// Chains only see visible targets.
	chain := one(store.Predicate{Param: "performer", Chain: &store.Chain{TargetType: "Practitioner", Where: one(store.Predicate{Param: "_id", ID: ptr("dr")})}})
	eq(t, "chain to invisible", find(t, s, "Observation", chain), []string{"oa1", "ob1"})
	eq(t, "chain to invisible filtered", ids(search(t, s, &store.Query{Type: "Observation", Filter: f, Where: []store.Clause{chain}}).Matches), []string{})
	// _has only sees visible referrers.
	has := one(store.Predicate{Has: &store.Has{Type: "Provenance", RefParam: "target", Where: one(store.Predicate{Param: "_id", ID: ptr("prov")})}})
	eq(t, "_has unfiltered", find(t, s, "Patient", has), []string{"a"})
	eq(t, "_has with invisible referrer", ids(search(t, s, &store.Query{Type: "Patient", Filter: f, Where: []store.Clause{has}}).Matches), []string{})
	has2 := one(store.Predicate{Has: &store.Has{Type: "Encounter", RefParam: "subject", Where: one(store.Predicate{Param: "_id", ID: ptr("ea")})}})
	eq(t, "_has with visible referrer", ids(search(t, s, &store.Query{Type: "Patient", Filter: f, Where: []store.Clause{has2}}).Matches), []string{"a"})
	// Paging through a filtered snapshot.
	first := search(t, s, &store.Query{Type: "Observation", Filter: f, Count: 1})
	if first.Total != 2 || first.Snapshot == "" {
		t.Fatalf("filtered first page: %+v", first)
	}
	second := search(t, s, &store.Query{Type: "Observation", Filter: f, Count: 1, Offset: 1, Snapshot: first.Snapshot})
	eq(t, "filtered second page", ids(second.Matches), []string{"oa2"})
	// A snapshot is bound to its query and filter: another caller (or a
	// tampered link) cannot page through it, nor learn its total.
	if _, err := s.Search(ctx, &store.Query{Type: "Observation", Filter: compartment("b"), Count: 1, Offset: 1, Snapshot: first.Snapshot}); !errors.Is(err, store.ErrSnapshotExpired) {
		t.Fatalf("snapshot used under another filter: %v", err)
	}
	if _, err := s.Search(ctx, &store.Query{Type: "Patient", Filter: f, Count: 1, Offset: 1, Snapshot: first.Snapshot}); !errors.Is(err, store.ErrSnapshotExpired) {
		t.Fatalf("snapshot used for another query: %v", err)
	}
}

func testTxSearch(t *testing.T, s store.Store) {
	create(t, s, "Patient", "a", store.Index{Tokens: []store.TokenRow{tok("identifier", "urn:x", "1")}})
	// Conditional create: search then put when absent.
	cond := func(id, ident string) error {
		return s.Update(ctx, func(tx store.Tx) error {
			r, err := tx.Search(ctx, &store.Query{Type: "Patient", Count: 2, Where: []store.Clause{one(store.Predicate{Param: "identifier", Token: &store.TokenMatch{System: ptr("urn:x"), Code: ident}})}})
			if err != nil {
				return err
			}
			if len(r.Matches) > 0 {
				return nil
			}
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: t0, Method: "POST", Body: body("Patient", id, 1),
				Index: store.Index{Tokens: []store.TokenRow{tok("identifier", "urn:x", ident)}}})
		})
	}
	if err := cond("b", "1"); err != nil {
		t.Fatal(err)
	}
	if err := cond("c", "2"); err != nil {
		t.Fatal(err)
	}
	if err := cond("d", "2"); err != nil {
		t.Fatal(err)
	}
	eq(t, "conditional creates", find(t, s, "Patient"), []string{"a", "c"})
}

func testConcurrentWriters(t *testing.T, s store.Store) {
	create(t, s, "Patient", "p", store.Index{})
	const n = 20
	// Read-modify-write inside the transaction: every update lands.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, func(tx store.Tx) error {
				cur, err := tx.Read(ctx, "Patient", "p")
				if err != nil {
					return err
				}
				v := cur.VersionID + 1
				return tx.Put(ctx, &store.Write{Type: "Patient", ID: "p", Version: v, LastUpdated: t0, Method: "PUT", Body: body("Patient", "p", v),
					Index: store.Index{Tokens: []store.TokenRow{tok("v", "", fmt.Sprint(v))}}})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("locked update: %v", err)
		}
	}
	r, err := s.Read(ctx, "Patient", "p")
	if err != nil || r.VersionID != n+1 {
		t.Fatalf("after locked updates: %+v %v", r, err)
	}
	// Index rows of exactly the current version, and its history.
	eq(t, "index of last version", find(t, s, "Patient", one(store.Predicate{Param: "v", Token: &store.TokenMatch{Code: fmt.Sprint(n + 1)}})), []string{"p"})
	eq(t, "index of older version", find(t, s, "Patient", one(store.Predicate{Param: "v", Token: &store.TokenMatch{Code: fmt.Sprint(n)}})), []string{})
	// Stale writers (read outside the transaction): conflicts, no lost update.
	ok, conflicts := racingWrites(t, n, "stale update", func() error {
		cur, err := s.Read(ctx, "Patient", "p")
		if err != nil {
			return err
		}
		v := cur.VersionID + 1
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: "p", Version: v, LastUpdated: t0, Method: "PUT", Body: body("Patient", "p", v)})
		})
	})
	r, err = s.Read(ctx, "Patient", "p")
	if err != nil {
		t.Fatal(err)
	}
	if ok+conflicts != n || r.VersionID != int64(n+1+ok) || ok == 0 {
		t.Fatalf("stale writers: ok %d conflicts %d final version %d", ok, conflicts, r.VersionID)
	}
	h, err := s.History(ctx, store.HistoryQuery{Type: "Patient", ID: "p", Count: 100})
	if err != nil || h.Total != int(r.VersionID) {
		t.Fatalf("history total %d, version %d, %v", h.Total, r.VersionID, err)
	}
	eq(t, "index of a replaced version", find(t, s, "Patient", one(store.Predicate{Param: "v", Token: &store.TokenMatch{Code: fmt.Sprint(n + 1)}})), []string{})
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	const n = 10
	ok, conflicts := racingWrites(t, n, "create", func() error {
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: "dup", Version: 1, LastUpdated: t0, Method: "PUT", Body: body("Patient", "dup", 1)})
		})
	})
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("ok %d conflicts %d", ok, conflicts)
	}
}

// allHistory pages through the history q asks for (at most 100 pages) and
// returns its versions as "Type/id/version" in the order listed, and the
// total the pages report (the same on every page, else the test fails).
func allHistory(t *testing.T, s store.Store, q store.HistoryQuery) ([]string, int) {
	t.Helper()
	var out []string
	total := -1
	for range 100 {
		p, err := s.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if total == -1 {
			total = p.Total
		} else if p.Total != total {
			t.Errorf("total changed between pages: %d -> %d", total, p.Total)
		}
		for _, v := range p.Versions {
			out = append(out, fmt.Sprintf("%s/%s/%d", v.Type, v.ID, v.VersionID))
		}
		if p.Next == "" {
			return out, total
		}
		q.Before = p.Next
	}
	t.Fatal("history does not end")
	return nil, 0
}

// racingWrites runs write in n goroutines at once and counts the writes
// that succeed and those refused with store.ErrConflict; any other error
// fails the test (what names the write).
func racingWrites(t *testing.T, n int, what string, write func() error) (ok, conflicts int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range n {
		wg.Go(func() {
			err := write()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("%s: %v", what, err)
			}
		})
	}
	wg.Wait()
	return ok, conflicts
}

func testPutIndex(t *testing.T, s store.Store) {
	create(t, s, "Observation", "o1", store.Index{Tokens: []store.TokenRow{tok("code", "", "old")}})
	create(t, s, "Observation", "o2", store.Index{Tokens: []store.TokenRow{tok("code", "", "old")}})
	put(t, s, &store.Write{Type: "Observation", ID: "o2", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true})
	code := func(c string) store.Clause {
		return one(store.Predicate{Param: "code", Token: &store.TokenMatch{Code: c}})
	}
	err := s.Update(ctx, func(tx store.Tx) error {
		iw, ok := tx.(store.IndexWriter)
		if !ok {
			t.Skip("transaction does not implement store.IndexWriter")
		}
		ix := store.Index{Tokens: []store.TokenRow{tok("code", "http://x", "new")}, Strings: []store.StringRow{str("note", "fresh")}}
		if err := iw.PutIndex(ctx, "Observation", "o1", &ix); err != nil {
			return err
		}
		if err := iw.PutIndex(ctx, "Observation", "o2", &ix); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutIndex on a deleted resource: %v", err)
		}
		if err := iw.PutIndex(ctx, "Observation", "nope", &ix); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutIndex on a missing resource: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "old rows gone", find(t, s, "Observation", code("old")), []string{})
	eq(t, "new rows", find(t, s, "Observation", code("new")), []string{"o1"})
	eq(t, "new string rows", find(t, s, "Observation", one(store.Predicate{Param: "note", String: &store.StringMatch{Value: "fre"}})), []string{"o1"})
	r, err := s.Read(ctx, "Observation", "o1")
	if err != nil || r.VersionID != 1 {
		t.Fatalf("version changed by PutIndex: %+v %v", r, err)
	}
}

// perType returns a per-type filter on compartment Patient/id (id "" for
// no compartment).
func perType(id string, types map[string][]store.AccessRule) *store.AccessFilter {
	f := &store.AccessFilter{Types: types}
	if id != "" {
		f.Compartment = compartment(id).Compartment
	}
	return f
}

var inComp = []store.AccessRule{{Compartment: true}}

// testAccessFilterTypes: only the listed types are visible, through every
// path (matches, system level, includes, revincludes, iterate, chains,
// _has, history); the wildcard covers unlisted types.
func testAccessFilterTypes(t *testing.T, s store.Store) {
	incFixture(t, s)
	q := func(q *store.Query) []string { return sorted(refs(search(t, s, q).Matches)) }
	inc := func(q *store.Query) []string { return sorted(refs(search(t, s, q).Included)) }
	// Patient and Observation in compartment a; nothing else.
	f := perType("a", map[string][]store.AccessRule{"Patient": inComp, "Observation": inComp})
	eq(t, "observations", q(&store.Query{Type: "Observation", Filter: f}), []string{"Observation/oa1", "Observation/oa2"})
	eq(t, "practitioners invisible", q(&store.Query{Type: "Practitioner", Filter: f}), []string{})
	eq(t, "system level", q(&store.Query{Filter: f}), []string{"Observation/oa1", "Observation/oa2", "Patient/a"})
	eq(t, "include *", inc(&store.Query{Type: "Observation", Filter: f, Include: []store.Include{{SourceType: "Observation", Param: "*"}}}), []string{"Patient/a"})
	eq(t, "revinclude provenance", inc(&store.Query{Type: "Patient", Filter: f, RevInclude: []store.Include{{SourceType: "Provenance", Param: "target"}, {SourceType: "*", Param: "*"}}}),
		[]string{"Observation/oa1", "Observation/oa2"})
	chain := one(store.Predicate{Param: "performer", Chain: &store.Chain{TargetType: "Practitioner", Where: one(store.Predicate{Param: "_id", ID: ptr("dr")})}})
	eq(t, "chain to invisible type", q(&store.Query{Type: "Observation", Filter: f, Where: []store.Clause{chain}}), []string{})
	has := one(store.Predicate{Has: &store.Has{Type: "Provenance", RefParam: "target", Where: one(store.Predicate{Param: "_id", ID: ptr("prov")})}})
	eq(t, "_has through invisible type", q(&store.Query{Type: "Patient", Filter: f, Where: []store.Clause{has}}), []string{})
	p, err := s.History(ctx, store.HistoryQuery{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "history", sorted(refs(p.Versions)), []string{"Observation/oa1", "Observation/oa2", "Patient/a"})
	if p.Total != 3 {
		t.Errorf("history total %d", p.Total)
	}
	// Unrestricted Practitioner (a user/ scope) next to compartment rules:
	// chains and includes reach it, but not Organization.
	f = perType("a", map[string][]store.AccessRule{"Patient": inComp, "Observation": inComp, "Practitioner": {{}}})
	eq(t, "chain to visible type", q(&store.Query{Type: "Observation", Filter: f, Where: []store.Clause{chain}}), []string{"Observation/oa1"})
	eq(t, "include:iterate stops at invisible type", inc(&store.Query{Type: "Observation", Filter: f,
		Include: []store.Include{{SourceType: "Observation", Param: "performer"}, {SourceType: "Practitioner", Param: "organization", Iterate: true}}}),
		[]string{"Practitioner/dr"})
	eq(t, "all practitioners", q(&store.Query{Type: "Practitioner", Filter: f}), []string{"Practitioner/dr"})
	// Wildcard: every type in the compartment, plus explicit Practitioner.
	f = perType("a", map[string][]store.AccessRule{"*": inComp, "Practitioner": {{}}})
	eq(t, "wildcard system level", q(&store.Query{Filter: f}), []string{"Observation/oa1", "Observation/oa2", "Patient/a", "Practitioner/dr"})
	eq(t, "wildcard typed", q(&store.Query{Type: "Observation", Filter: f}), []string{"Observation/oa1", "Observation/oa2"})
	eq(t, "wildcard Organization (not in compartment)", q(&store.Query{Type: "Organization", Filter: f}), []string{})
	// Unconditional wildcard: everything.
	f = perType("", map[string][]store.AccessRule{"*": {{}}})
	if n := len(search(t, s, &store.Query{Filter: f}).Matches); n != 9 {
		t.Errorf("unconditional wildcard: %d matches", n)
	}
	// Fail closed: compartment rules without a compartment; empty rule lists.
	f = perType("", map[string][]store.AccessRule{"Observation": inComp, "Patient": {}})
	eq(t, "compartment rule without compartment", q(&store.Query{Type: "Observation", Filter: f}), []string{})
	eq(t, "empty rule list", q(&store.Query{Type: "Patient", Filter: f}), []string{})
	eq(t, "nothing at system level", q(&store.Query{Filter: f}), []string{})
	eq(t, "empty types map", q(&store.Query{Filter: &store.AccessFilter{Types: map[string][]store.AccessRule{}}}), []string{})
}

// granFixture: observations of patients a and b with categories.
func granFixture(t *testing.T, s store.Store) {
	cat := func(code string) store.TokenRow { return tok("category", "http://cat", code) }
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Patient", ID: "b"},
		&store.Write{Type: "Observation", ID: "alab", Index: store.Index{Tokens: []store.TokenRow{cat("laboratory")}, References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "avit", Index: store.Index{Tokens: []store.TokenRow{cat("vital-signs")}, References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "asoc", Index: store.Index{Tokens: []store.TokenRow{cat("social-history"), tok("category", "http://other", "laboratory")}, References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "anone", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		&store.Write{Type: "Observation", ID: "blab", Index: store.Index{Tokens: []store.TokenRow{cat("laboratory")}, References: []store.ReferenceRow{ref("subject", "Patient", "b")}}},
	)
}

func catClause(codes ...string) store.Clause {
	sys := "http://cat"
	var c store.Clause
	for _, code := range codes {
		c.Any = append(c.Any, store.Predicate{Param: "category", Token: &store.TokenMatch{System: &sys, Code: code}})
	}
	return c
}

// testAccessFilterGranular: rules with token clauses filter matches,
// includes, totals and paging exactly.
func testAccessFilterGranular(t *testing.T, s store.Store) {
	granFixture(t, s)
	f := perType("a", map[string][]store.AccessRule{
		"Patient":     inComp,
		"Observation": {{Compartment: true, Where: []store.Clause{catClause("laboratory", "social-history")}}},
	})
	r := search(t, s, &store.Query{Type: "Observation", Filter: f})
	eq(t, "granular", ids(r.Matches), []string{"alab", "asoc"})
	if r.Total != 2 {
		t.Errorf("granular total %d", r.Total)
	}
	first := search(t, s, &store.Query{Type: "Observation", Filter: f, Count: 1})
	if first.Total != 2 || first.Snapshot == "" || !first.HasMore {
		t.Fatalf("granular first page: %+v", first)
	}
	second := search(t, s, &store.Query{Type: "Observation", Filter: f, Count: 1, Offset: 1, Snapshot: first.Snapshot})
	eq(t, "granular second page", ids(second.Matches), []string{"asoc"})
	eq(t, "granular revinclude", sorted(refs(search(t, s, &store.Query{Type: "Patient", Filter: f,
		RevInclude: []store.Include{{SourceType: "Observation", Param: "subject"}}}).Included)), []string{"Observation/alab", "Observation/asoc"})
	eq(t, "granular system level", sorted(refs(search(t, s, &store.Query{Filter: f}).Matches)), []string{"Observation/alab", "Observation/asoc", "Patient/a"})
	// The system must match too: laboratory in another system does not count.
	f2 := perType("a", map[string][]store.AccessRule{"Observation": {{Compartment: true, Where: []store.Clause{catClause("laboratory")}}}})
	eq(t, "granular system", ids(search(t, s, &store.Query{Type: "Observation", Filter: f2}).Matches), []string{"alab"})
	// Without a compartment (user/ granular scope): every patient's.
	f3 := perType("", map[string][]store.AccessRule{"Observation": {{Where: []store.Clause{catClause("laboratory")}}}})
	eq(t, "granular without compartment", ids(search(t, s, &store.Query{Type: "Observation", Filter: f3}).Matches), []string{"alab", "blab"})
	// Clauses are ANDed within a rule.
	f4 := perType("", map[string][]store.AccessRule{"Observation": {{Where: []store.Clause{catClause("laboratory"), catClause("social-history")}}}})
	eq(t, "clauses ANDed", ids(search(t, s, &store.Query{Type: "Observation", Filter: f4}).Matches), []string{})
	// A snapshot is bound to its rules.
	if _, err := s.Search(ctx, &store.Query{Type: "Observation", Filter: f3, Count: 1, Offset: 1, Snapshot: first.Snapshot}); !errors.Is(err, store.ErrSnapshotExpired) {
		t.Fatalf("snapshot used under other rules: %v", err)
	}
	p, err := s.History(ctx, store.HistoryQuery{Type: "Observation", Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "granular history", sorted(refs(p.Versions)), []string{"Observation/alab", "Observation/asoc"})
}

// testAccessFilterMixed: several rules per type are ORed (a patient/ scope
// on every category next to a user/ scope on laboratory).
func testAccessFilterMixed(t *testing.T, s store.Store) {
	granFixture(t, s)
	f := perType("a", map[string][]store.AccessRule{
		"Observation": {{Compartment: true, Where: []store.Clause{catClause("vital-signs")}}, {Where: []store.Clause{catClause("laboratory")}}},
		"Patient":     {{Compartment: true}, {Where: []store.Clause{one(store.Predicate{Param: "_id", ID: ptr("b")})}}},
	})
	eq(t, "mixed observations", ids(search(t, s, &store.Query{Type: "Observation", Filter: f}).Matches), []string{"alab", "avit", "blab"})
	eq(t, "mixed patients", ids(search(t, s, &store.Query{Type: "Patient", Filter: f}).Matches), []string{"a", "b"})
	eq(t, "mixed system level", sorted(refs(search(t, s, &store.Query{Filter: f}).Matches)),
		[]string{"Observation/alab", "Observation/avit", "Observation/blab", "Patient/a", "Patient/b"})
	eq(t, "mixed include", sorted(refs(search(t, s, &store.Query{Type: "Observation", Filter: f,
		Include: []store.Include{{SourceType: "Observation", Param: "subject"}}}).Included)), []string{"Patient/a", "Patient/b"})
}
