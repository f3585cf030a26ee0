package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// testHistoryTypeOnly checks the history of filters that decide by type
// alone (no join, the per-type merge for a system history hiding types,
// the _since index path, bounded totals) against the versions listed by
// hand: the same versions in the same order page by page, never one of a
// hidden type, and the same total. The versions' times are not in the
// order of their writes, so that an index by time cannot stand for the
// history's order.
func testHistoryTypeOnly(t *testing.T, s store.Store) {
	type ver struct {
		typ, id string
		v       int64
		at      time.Time
	}
	rng := rand.New(rand.NewPCG(7, 11))
	types := []string{"AuditEvent", "Encounter", "Observation", "Patient"}
	versions := map[string]int64{}
	var all []ver // in the order written (the history's sequence)
	for i := range 60 {
		typ := types[rng.IntN(len(types))]
		if i%3 == 0 {
			typ = "AuditEvent" // most writes leave an AuditEvent
		}
		id := fmt.Sprintf("%c%d", typ[0], rng.IntN(4))
		versions[typ+"/"+id]++
		v := ver{typ, id, versions[typ+"/"+id], t0.Add(time.Duration(rng.IntN(40)) * time.Minute)}
		put(t, s, &store.Write{Type: typ, ID: id, Version: v.v, LastUpdated: v.at, Method: "PUT", Body: body(typ, id, v.v)})
		all = append(all, v)
	}
	rules := func(m map[string][]store.AccessRule) *store.AccessFilter { return &store.AccessFilter{Types: m} }
	filters := map[string]*store.AccessFilter{
		"all but AuditEvent":   rules(map[string][]store.AccessRule{"*": {{}}, "AuditEvent": {}}),
		"everything":           rules(map[string][]store.AccessRule{"*": {{}}}),
		"Observation, Patient": rules(map[string][]store.AccessRule{"Observation": {{}}, "Patient": {{}}}),
		"only AuditEvent":      rules(map[string][]store.AccessRule{"AuditEvent": {{}}}),
		"nothing":              rules(map[string][]store.AccessRule{}),
		"none of these":        rules(map[string][]store.AccessRule{"*": {}, "Account": {{}}}),
	}
	visible := func(f *store.AccessFilter, typ string) bool {
		rs, ok := f.Types[typ]
		if !ok {
			rs = f.Types["*"]
		}
		return len(rs) > 0
	}
	times := []time.Time{{}, t0.Add(5 * time.Minute), t0.Add(20 * time.Minute), t0.Add(38 * time.Minute), t0.Add(time.Hour)}
	for name, f := range filters {
		for _, typ := range []string{"", "Patient", "AuditEvent"} {
			for _, since := range times {
				for _, at := range times[:3] {
					for _, limit := range []int{0, 1, 5, 1000} {
						for _, count := range []int{1, 3, 50} {
							var want []string
							for i := len(all) - 1; i >= 0; i-- {
								v := all[i]
								if !visible(f, v.typ) || typ != "" && v.typ != typ ||
									!since.IsZero() && v.at.Before(since) || !at.IsZero() && !v.at.Before(at) {
									continue
								}
								want = append(want, fmt.Sprintf("%s/%s/%d", v.typ, v.id, v.v))
							}
							wantTotal := len(want)
							if limit > 0 && wantTotal > limit {
								wantTotal = -1
							}
							what := fmt.Sprintf("%s, type %q, since %v, at %v, limit %d, count %d", name, typ, since, at, limit, count)
							got, total := allHistory(t, s, store.HistoryQuery{Type: typ, Since: since, At: at, TotalLimit: limit, Count: count, Filter: f})
							if !slices.Equal(got, want) {
								t.Errorf("%s: got %v, want %v", what, got, want)
							}
							if total != wantTotal {
								t.Errorf("%s: total %d, want %d", what, total, wantTotal)
							}
						}
					}
				}
			}
		}
	}
}

// testHistoryNoVisibleMember: a system history under compartment rules of
// which no visible type is a member through references (a patient-bound
// caller granted only Practitioner or Medication, which are not in the
// patient's compartment) lists nothing, without an error: its driver is
// the compartment's own resource alone.
func testHistoryNoVisibleMember(t *testing.T, s store.Store) {
	createAll(t, s,
		&store.Write{Type: "Patient", ID: "a"},
		&store.Write{Type: "Practitioner", ID: "dr"},
		&store.Write{Type: "Observation", ID: "o1", Index: store.Index{References: []store.ReferenceRow{ref("subject", "Patient", "a")}}},
	)
	for _, types := range []map[string][]store.AccessRule{
		{"Practitioner": inComp},
		{"Practitioner": inComp, "AuditEvent": {}},
	} {
		p, err := s.History(ctx, store.HistoryQuery{Filter: perType("a", types), Count: 10})
		if err != nil {
			t.Fatalf("%v: %v", types, err)
		}
		if len(p.Versions) != 0 || p.Total != 0 {
			t.Errorf("%v: %d versions, total %d", types, len(p.Versions), p.Total)
		}
	}
}
