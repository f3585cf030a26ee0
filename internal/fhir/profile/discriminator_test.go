package profile

import (
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

// discriminatorSet is a hand-made set whose profiles slice by the
// discriminator kinds US Core's resource profiles do not use: exists,
// profile (an extension and a contained resource) and type below the
// sliced element.
func discriminatorSet(t *testing.T) *Set {
	t.Helper()
	el := func(id, path string, min, max int, mod func(e *wire.ProfileElem)) wire.ProfileElem {
		e := wire.ProfileElem{ID: id, Path: path, Min: min, Max: max}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	slicing := func(typ, path string) func(e *wire.ProfileElem) {
		return func(e *wire.ProfileElem) { e.Slicing = []wire.Discriminator{{Type: typ, Path: path}} }
	}
	slice := func(name string, mod func(e *wire.ProfileElem)) func(e *wire.ProfileElem) {
		return func(e *wire.ProfileElem) {
			e.SliceName = name
			if mod != nil {
				mod(e)
			}
		}
	}
	v := wire.ProfileVersion{Version: "test", Profiles: []wire.Profile{
		{URL: "http://example.org/obs", Type: "Observation", Elements: []wire.ProfileElem{
			el("Observation", "Observation", 0, -1, nil),
			// exists: a component with dataAbsentReason is in "absent".
			el("Observation.component", "Observation.component", 0, -1, slicing("exists", "dataAbsentReason")),
			el("Observation.component:absent", "Observation.component", 1, 1, slice("absent", nil)),
			el("Observation.component:absent.dataAbsentReason", "Observation.component.dataAbsentReason", 1, 1, nil),
			// profile on $this: extensions by their profile (url).
			el("Observation.extension", "Observation.extension", 0, -1, slicing("profile", "$this")),
			el("Observation.extension:foo", "Observation.extension", 1, 1, slice("foo", func(e *wire.ProfileElem) {
				e.Types = []string{"Extension"}
				e.Profile = "http://example.org/ext-foo"
			})),
			// profile on a resource: a contained Patient conforming to
			// http://example.org/pat.
			el("Observation.contained", "Observation.contained", 0, -1, slicing("profile", "$this")),
			el("Observation.contained:pat", "Observation.contained", 1, -1, slice("pat", func(e *wire.ProfileElem) {
				e.Types = []string{"Resource"}
				e.Profile = "http://example.org/pat"
			})),
		}},
		{URL: "http://example.org/obs-type", Type: "Observation", Elements: []wire.ProfileElem{
			el("Observation", "Observation", 0, -1, nil),
			// type below the element: components by the type of value[x].
			el("Observation.component", "Observation.component", 0, -1, slicing("type", "value")),
			el("Observation.component:q", "Observation.component", 2, -1, slice("q", nil)),
			el("Observation.component:q.value[x]", "Observation.component.value[x]", 1, 1, func(e *wire.ProfileElem) {
				e.Types = []string{"Quantity"}
			}),
		}},
		{URL: "http://example.org/pat", Type: "Patient", Elements: []wire.ProfileElem{
			el("Patient", "Patient", 0, -1, nil),
			el("Patient.gender", "Patient.gender", 1, 1, nil),
		}},
	}}
	s, err := newSet(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDiscriminators checks membership by exists, profile and type
// discriminators: a conforming instance passes, and one whose values fall
// outside the slice is refused naming the slice.
func TestDiscriminators(t *testing.T) {
	s := discriminatorSet(t)
	good := func() map[string]any {
		r, err := decode([]byte(`{"resourceType":"Observation",
			"component":[{"code":{"text":"a"},"valueString":"x"},{"code":{"text":"b"},"dataAbsentReason":{"text":"asked"}}],
			"extension":[{"url":"http://example.org/ext-foo","valueString":"v"},{"url":"http://example.org/other","valueString":"w"}],
			"contained":[{"resourceType":"Patient","id":"p","gender":"female"},{"resourceType":"Patient","id":"q"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	typed := func() map[string]any {
		r, _ := decode([]byte(`{"resourceType":"Observation","component":[
			{"code":{"text":"a"},"valueQuantity":{"value":1}},{"code":{"text":"b"},"valueQuantity":{"value":2}},{"code":{"text":"c"},"valueString":"s"}]}`))
		return r
	}
	for _, p := range []struct {
		url string
		r   map[string]any
	}{{"http://example.org/obs", good()}, {"http://example.org/obs-type", typed()}} {
		if issues, err := s.Validate(p.r, p.url); err != nil || len(issues) != 0 {
			t.Fatalf("%s: conforming instance refused: %v %v", p.url, issues, err)
		}
	}
	cases := []struct {
		name, profile string
		r             map[string]any
		edit          func(r map[string]any)
		element       string
	}{
		{"exists", "http://example.org/obs", good(), func(r map[string]any) {
			r["component"] = r["component"].([]any)[:1]
		}, "Observation.component:absent"},
		{"profile (extension)", "http://example.org/obs", good(), func(r map[string]any) {
			r["extension"] = r["extension"].([]any)[1:]
		}, "Observation.extension:foo"},
		{"profile (resource)", "http://example.org/obs", good(), func(r map[string]any) {
			r["contained"] = r["contained"].([]any)[1:] // the Patient without gender does not conform
		}, "Observation.contained:pat"},
		{"type", "http://example.org/obs-type", typed(), func(r map[string]any) {
			r["component"] = r["component"].([]any)[1:]
		}, "Observation.component:q"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.edit(c.r)
			issues, err := s.Validate(c.r, c.profile)
			if err != nil {
				t.Fatal(err)
			}
			for _, is := range issues {
				if is.Element == c.element && is.Rule == "slice" {
					return
				}
			}
			t.Errorf("want a slice issue on %s, got %v", c.element, issues)
		})
	}
}
