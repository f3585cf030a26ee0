package storetest

import (
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
				if total != len(out) {
					t.Errorf("total %d, %d versions listed: %v", total, len(out), out)
				}
				return sorted(out)
			}
			q.Before = p.Next
		}
		t.Fatal("history does not end")
		return nil
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
