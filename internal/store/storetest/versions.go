package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// testHistoryVersions: under a filter limiting a type by compartment or
// criteria, history lists a version when the resource passes the filter
// now and that version passed it too (on the index rows it had), at
// instance, type and system level, with totals agreeing with the pages and
// for one version (HistoryQuery.Version). Criteria that cannot be decided
// on an earlier version hide it; whole-type rules list every version.
func testHistoryVersions(t *testing.T, s store.Store) {
	ix := func(patient, category string) store.Index {
		return store.Index{
			Tokens:     []store.TokenRow{tok("category", "http://cat", category), tok("status", "", "final")},
			References: []store.ReferenceRow{ref("subject", "Patient", patient), {Param: "derived-from", URL: "http://elsewhere/x"}},
		}
	}
	write := func(id string, v int64, x store.Index) *store.Write {
		return &store.Write{Type: "Observation", ID: id, Version: v, LastUpdated: t0, Method: "PUT", Body: body("Observation", id, v), Index: x}
	}
	createAll(t, s, &store.Write{Type: "Patient", ID: "a"}, &store.Write{Type: "Patient", ID: "b"})
	put(t, s, &store.Write{Type: "Patient", ID: "a", Version: 2, LastUpdated: t0, Method: "PUT", Body: body("Patient", "a", 2)})
	for _, w := range []*store.Write{
		write("om", 1, ix("b", "laboratory")), write("om", 2, ix("a", "laboratory")), // moved b → a
		write("oc", 1, ix("a", "vital-signs")), write("oc", 2, ix("a", "laboratory")), // recategorised
		write("ox", 1, ix("a", "laboratory")), write("ox", 2, ix("b", "laboratory")), // moved a → b
		write("od", 1, ix("a", "laboratory")), {Type: "Observation", ID: "od", Version: 2, LastUpdated: t0, Method: "DELETE", Deleted: true},
		write("od", 3, ix("a", "laboratory")), // deleted and recreated
		{Type: "Observation", ID: "on", Version: 1, LastUpdated: t0, Method: "POST", Body: body("Observation", "on", 1),
			Index: store.Index{Strings: []store.StringRow{str("note", "x")}, References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
		{Type: "Observation", ID: "on", Version: 2, LastUpdated: t0, Method: "PUT", Body: body("Observation", "on", 2),
			Index: store.Index{Strings: []store.StringRow{str("note", "x")}, References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
	} {
		put(t, s, w)
	}
	// os: three versions in one transaction (a, b, a).
	err := s.Update(ctx, func(tx store.Tx) error {
		for v, p := range []string{"a", "b", "a"} {
			if err := tx.Put(ctx, write("os", int64(v+1), ix(p, "laboratory"))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	hist := func(q store.HistoryQuery) []string {
		t.Helper()
		out, total := allHistory(t, s, q)
		if total != len(out) {
			t.Errorf("total %d, %d versions listed: %v", total, len(out), out)
		}
		return sorted(out)
	}
	lab := []store.Clause{catClause("laboratory")}
	for _, c := range []struct {
		name   string
		f      *store.AccessFilter
		system []string
	}{
		{"compartment", compartment("a"), []string{
			"Observation/oc/1", "Observation/oc/2", "Observation/od/1", "Observation/od/3", "Observation/om/2",
			"Observation/on/1", "Observation/on/2", "Observation/os/1", "Observation/os/3", "Patient/a/1", "Patient/a/2"}},
		{"compartment and category", perType("a", map[string][]store.AccessRule{"Patient": inComp, "Observation": {{Compartment: true, Where: lab}}}), []string{
			"Observation/oc/2", "Observation/od/1", "Observation/od/3", "Observation/om/2", "Observation/os/1", "Observation/os/3", "Patient/a/1", "Patient/a/2"}},
		{"category without compartment", perType("", map[string][]store.AccessRule{"Observation": {{Where: lab}}}), []string{
			"Observation/oc/2", "Observation/od/1", "Observation/od/3", "Observation/om/1", "Observation/om/2",
			"Observation/os/1", "Observation/os/2", "Observation/os/3", "Observation/ox/1", "Observation/ox/2"}},
		{"criteria not kept for earlier versions", perType("", map[string][]store.AccessRule{"Observation": {{Where: []store.Clause{
			one(store.Predicate{Param: "note", String: &store.StringMatch{Value: "x"}})}}}}), []string{"Observation/on/2"}},
		{"whole type", perType("", map[string][]store.AccessRule{"Observation": {{}}}), []string{
			"Observation/oc/1", "Observation/oc/2", "Observation/od/1", "Observation/od/2", "Observation/od/3", "Observation/om/1", "Observation/om/2",
			"Observation/on/1", "Observation/on/2", "Observation/os/1", "Observation/os/2", "Observation/os/3", "Observation/ox/1", "Observation/ox/2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var obs []string
			byID := map[string][]string{}
			for _, v := range c.system {
				if parts := strings.Split(v, "/"); parts[0] == "Observation" {
					obs = append(obs, v)
					byID[parts[1]] = append(byID[parts[1]], v)
				}
			}
			for _, count := range []int{1, 2, 50} {
				eq(t, fmt.Sprintf("system _count=%d", count), hist(store.HistoryQuery{Filter: c.f, Count: count}), c.system)
				eq(t, fmt.Sprintf("type _count=%d", count), hist(store.HistoryQuery{Type: "Observation", Filter: c.f, Count: count}), obs)
			}
			for _, id := range []string{"om", "oc", "ox", "od", "os", "on"} {
				want := byID[id]
				if want == nil {
					want = []string{}
				}
				eq(t, "instance "+id, hist(store.HistoryQuery{Type: "Observation", ID: id, Filter: c.f, Count: 1}), sorted(want))
				for v := int64(1); v <= 3; v++ {
					p, err := s.History(ctx, store.HistoryQuery{Type: "Observation", ID: id, Version: v, Filter: c.f})
					if err != nil {
						t.Fatal(err)
					}
					ref := fmt.Sprintf("Observation/%s/%d", id, v)
					wantN := 0
					if slices.Contains(want, ref) {
						wantN = 1
					}
					if len(p.Versions) != wantN || p.Total != wantN || (wantN == 1 && p.Versions[0].VersionID != v) {
						t.Errorf("version %s: %d versions, total %d, want %d", ref, len(p.Versions), p.Total, wantN)
					}
				}
			}
		})
	}
}

// testVersionIndex: Superseded lists the versions that are no longer
// current, and PutVersionIndex replaces the rows kept for one of them
// (deciding its membership), leaving current versions and delete markers
// alone.
func testVersionIndex(t *testing.T, s store.Store) {
	subject := func(p string) store.Index {
		return store.Index{References: []store.ReferenceRow{ref("subject", "Patient", p), ref("subject", "Patient", p)}}
	}
	w := func(id string, v int64, del bool, x store.Index) *store.Write {
		w := &store.Write{Type: "Observation", ID: id, Version: v, LastUpdated: t0, Method: "PUT", Deleted: del, Index: x}
		if !del {
			w.Body = body("Observation", id, v)
		}
		return w
	}
	for _, x := range []*store.Write{
		w("o1", 1, false, subject("b")), w("o1", 2, false, subject("a")),
		w("o2", 1, false, subject("a")), w("o2", 2, true, store.Index{}), w("o2", 3, false, subject("a")),
		w("o3", 1, false, subject("a")),
	} {
		put(t, s, x)
	}
	p, err := s.History(ctx, store.HistoryQuery{Type: "Observation", Superseded: true, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != -1 || len(p.Versions) != 1 || p.Next == "" {
		t.Fatalf("superseded first page: %+v", p)
	}
	var got []string
	for {
		for _, v := range p.Versions {
			got = append(got, fmt.Sprintf("%s/%d", v.ID, v.VersionID))
		}
		if p.Next == "" {
			break
		}
		if p, err = s.History(ctx, store.HistoryQuery{Type: "Observation", Superseded: true, Count: 1, Before: p.Next}); err != nil {
			t.Fatal(err)
		}
	}
	eq(t, "superseded", got, []string{"o2/2", "o2/1", "o1/1"})

	inA := func() []string {
		t.Helper()
		p, err := s.History(ctx, store.HistoryQuery{Type: "Observation", Filter: compartment("a")})
		if err != nil {
			t.Fatal(err)
		}
		return sorted(refs(p.Versions))
	}
	eq(t, "before", inA(), []string{"Observation/o1", "Observation/o2", "Observation/o2", "Observation/o3"})
	putVersion := func(id string, v int64, x store.Index) error {
		return s.Update(ctx, func(tx store.Tx) error {
			vw, ok := tx.(store.VersionIndexWriter)
			if !ok {
				t.Fatal("no VersionIndexWriter")
			}
			return vw.PutVersionIndex(ctx, "Observation", id, v, &x)
		})
	}
	// o1/1 was b's; re-keyed as a's it becomes visible to a, and o2/1
	// re-keyed as b's is hidden. The current o3/1 and the delete marker
	// o2/2 are left alone.
	for _, c := range []struct {
		id string
		v  int64
		x  store.Index
	}{{"o1", 1, subject("a")}, {"o2", 1, subject("b")}, {"o3", 1, subject("b")}, {"o2", 2, subject("a")}} {
		if err := putVersion(c.id, c.v, c.x); err != nil {
			t.Fatalf("%s/%d: %v", c.id, c.v, err)
		}
	}
	eq(t, "after", inA(), []string{"Observation/o1", "Observation/o1", "Observation/o2", "Observation/o3"})
	if err := putVersion("o1", 9, subject("a")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown version: %v", err)
	}
}
