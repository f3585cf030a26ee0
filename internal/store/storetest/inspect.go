package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// testInspect: Inspect returns the current row, every history row and the
// current row's index rows exactly as stored; EachID lists the ids of a
// type.
func testInspect(t *testing.T, s store.Store) {
	ins, ok := s.(store.Inspector)
	if !ok {
		t.Skip("store does not implement store.Inspector")
	}
	v1 := store.Index{Tokens: []store.TokenRow{tok("code", "http://x", "old")}}
	v2 := store.Index{
		Strings:    []store.StringRow{str("name", "Ève Zoë")},
		Tokens:     []store.TokenRow{{Param: "code", System: "http://x", Code: "new", Text: "new text"}, {Param: "combo$1", Group: 2, Code: "c"}},
		References: []store.ReferenceRow{ref("subject", "Patient", "p1")},
		Dates:      []store.DateRow{{Param: "date", Lo: ms("2024-01-01T00:00:00Z"), Hi: ms("2024-01-01T23:59:59Z") + 999}},
		Numbers:    []store.NumberRow{{Param: "n", Lo: 0.1, Hi: 0.30000000000000004}},
		Quantities: []store.QuantityRow{{Param: "value", System: "http://unitsofmeasure.org", Code: "mg", Unit: "milligram", Lo: 1.5, Hi: 2.5}},
		URIs:       []store.URIRow{{Param: "url", URI: "http://example.org/a"}},
	}
	create(t, s, "Observation", "o1", v1)
	t1 := t0.Add(1500 * time.Millisecond)
	put(t, s, &store.Write{Type: "Observation", ID: "o1", Version: 2, LastUpdated: t1, Method: "PUT", Body: body("Observation", "o1", 2), Index: v2})
	create(t, s, "Observation", "o2", store.Index{})
	put(t, s, &store.Write{Type: "Observation", ID: "o2", Version: 2, LastUpdated: t1, Method: "DELETE", Deleted: true})
	create(t, s, "Patient", "o3", store.Index{Tokens: []store.TokenRow{tok("code", "", "other type")}})

	got, err := ins.Inspect(ctx, "Observation", []string{"o1", "o2", "o3", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["o3"] != nil || got["nope"] != nil {
		t.Fatalf("inspected ids: %v", got)
	}
	o1 := got["o1"]
	if c := o1.Current; c == nil || c.VersionID != 2 || !c.LastUpdated.Equal(t1) || c.Method != "PUT" || c.Deleted || string(c.Body) != string(body("Observation", "o1", 2)) {
		t.Fatalf("o1 current: %+v", c)
	}
	if len(o1.History) != 2 || o1.History[0].VersionID != 1 || o1.History[0].Method != "POST" || !o1.History[0].LastUpdated.Equal(t0) ||
		string(o1.History[0].Body) != string(body("Observation", "o1", 1)) || o1.History[1].VersionID != 2 {
		t.Fatalf("o1 history: %+v", o1.History)
	}
	if !reflect.DeepEqual(o1.Index, v2) {
		t.Errorf("o1 index:\n got %+v\nwant %+v", o1.Index, v2)
	}
	if o1.Mask != sqlgen.Mask(&v2) {
		t.Errorf("o1 mask %b, want %b", o1.Mask, sqlgen.Mask(&v2))
	}
	o2 := got["o2"]
	if o2.Current == nil || !o2.Current.Deleted || len(o2.History) != 2 || !o2.History[1].Deleted || !reflect.DeepEqual(o2.Index, store.Index{}) {
		t.Fatalf("o2: %+v", o2)
	}

	for i := range 5 {
		create(t, s, "Observation", "p"+string(rune('a'+i)), store.Index{})
	}
	var all []string
	err = ins.EachID(ctx, "Observation", func(id string) error { all = append(all, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	eq(t, "ids", all, []string{"o1", "o2", "pa", "pb", "pc", "pd", "pe"})
}
