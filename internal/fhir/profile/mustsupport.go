package profile

import (
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

// Type returns the resource type of profile url ("" for an unknown
// profile; a |version suffix is ignored).
func (s *Set) Type(url string) string {
	url, _, _ = strings.Cut(url, "|")
	if p := s.profiles[url]; p != nil {
		return p.typ
	}
	return ""
}

// MustSupport returns the Must Support elements of profile url in
// snapshot order, by element id ("Observation.category:us-core" for a
// slice). A choice element's types flagged Must Support are listed after
// it as type slices ("Observation.value[x]:valueQuantity"). It returns nil
// for an unknown profile.
func (s *Set) MustSupport(url string) []string {
	url, _, _ = strings.Cut(url, "|")
	p := s.profiles[url]
	if p == nil {
		return nil
	}
	var out []string
	for _, e := range p.elements {
		if !e.MustSupport {
			continue
		}
		out = append(out, e.ID)
		if strings.HasSuffix(e.ID, "[x]") {
			for _, t := range e.MSTypes {
				if id := choiceID(e, t); p.byID[id] == nil { // else a type slice of the snapshot
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// choiceID names type t of choice element e as a type slice:
// ("Observation.value[x]", "Quantity") -> "Observation.value[x]:valueQuantity".
func choiceID(e *wire.ProfileElem, t string) string {
	name := strings.TrimSuffix(e.Path[strings.LastIndexByte(e.Path, '.')+1:], "[x]")
	return e.ID + ":" + name + strings.ToUpper(t[:1]) + t[1:]
}

// Coverage is the Must Support elements (as MustSupport names them) of
// one resource for one profile.
type Coverage struct {
	// Present are the elements with at least one value. An element below
	// another counts only where its parent is present; slice members are
	// sorted by the slice's discriminator as Validate sorts them, or by the
	// slice's required binding when it has no fixed or pattern value.
	Present map[string]bool
	// Unchecked are the slices whose discriminator cannot be evaluated
	// (profile or exists discriminators, bindings to value sets the
	// packages do not enumerate) while the sliced element has values:
	// neither present nor missing.
	Unchecked map[string]bool
}

// Covered returns the Must Support coverage of resource (decoded as for
// Validate) for profile url, whether or not the resource conforms. It
// returns an error as Validate does.
func (s *Set) Covered(resource map[string]any, url string) (Coverage, error) {
	p, err := s.profileOf(resource, url)
	if err != nil {
		return Coverage{}, err
	}
	v := &run{s: s, p: p, present: map[string]bool{}, unchecked: map[string]bool{}}
	v.object(p.typ, resource)
	return Coverage{Present: v.present, Unchecked: v.unchecked}, nil
}

// mark records e (and the Must Support types of a choice element) as
// present when vals holds a value.
func (v *run) mark(e *wire.ProfileElem, vals []item) {
	if !e.MustSupport || len(vals) == 0 {
		return
	}
	v.present[e.ID] = true
	if !strings.HasSuffix(e.ID, "[x]") {
		return
	}
	prefix := strings.TrimSuffix(e.Path[strings.LastIndexByte(e.Path, '.')+1:], "[x]")
	for _, it := range vals {
		t := strings.TrimPrefix(it.key, prefix)
		if t == "" {
			continue
		}
		for _, mt := range e.MSTypes {
			if strings.EqualFold(mt[:1], t[:1]) && mt[1:] == t[1:] {
				v.present[choiceID(e, mt)] = true
			}
		}
	}
}
