package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

// structureDefinition is the subset of a profile read.
type structureDefinition struct {
	URL        string `json:"url"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Kind       string `json:"kind"`
	Derivation string `json:"derivation"`
	Snapshot   struct {
		Element []json.RawMessage `json:"element"`
	} `json:"snapshot"`
}

type element struct {
	ID          string `json:"id"`
	Path        string `json:"path"`
	SliceName   string `json:"sliceName"`
	Min         int    `json:"min"`
	Max         string `json:"max"`
	MustSupport bool   `json:"mustSupport"`
	Type        []struct {
		Code      string   `json:"code"`
		Profile   []string `json:"profile"`
		Extension []struct {
			URL          string `json:"url"`
			ValueBoolean bool   `json:"valueBoolean"`
		} `json:"extension"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Slicing *struct {
		Discriminator []wire.Discriminator `json:"discriminator"`
		Rules         string               `json:"rules"`
	} `json:"slicing"`
	Constraint []wire.Constraint `json:"constraint"`
}

// typeMustSupport flags one type of a choice element Must Support.
const typeMustSupport = "http://hl7.org/fhir/StructureDefinition/elementdefinition-type-must-support"

type valueSet struct {
	URL     string `json:"url"`
	Compose struct {
		Include []struct {
			System   string                  `json:"system"`
			Concept  []struct{ Code string } `json:"concept"`
			Filter   []json.RawMessage       `json:"filter"`
			ValueSet []string                `json:"valueSet"`
		} `json:"include"`
		Exclude []json.RawMessage `json:"exclude"`
	} `json:"compose"`
}

type codeSystem struct {
	URL     string    `json:"url"`
	Content string    `json:"content"`
	Concept []concept `json:"concept"`
}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

func (c concept) codes(out []string) []string {
	out = append(out, c.Code)
	for _, s := range c.Concept {
		out = s.codes(out)
	}
	return out
}

// profiles extracts the resource profiles of one package and the codes of
// the value sets of their required bindings that can be enumerated from
// the package's ValueSets and CodeSystems or from R4 (r4VS).
func profiles(files map[string][]byte, version string, r4VS map[string][]string) (wire.ProfileVersion, error) {
	v := wire.ProfileVersion{Version: version, ValueSets: map[string][]string{}}
	vss := map[string]*valueSet{}
	css := map[string][]string{}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "package/ValueSet-"):
			var vs valueSet
			if err := json.Unmarshal(files[n], &vs); err != nil {
				return v, fmt.Errorf("%s: %w", n, err)
			}
			vss[vs.URL] = &vs
		case strings.HasPrefix(n, "package/CodeSystem-"):
			var cs codeSystem
			if err := json.Unmarshal(files[n], &cs); err != nil {
				return v, fmt.Errorf("%s: %w", n, err)
			}
			if cs.Content == "complete" {
				var codes []string
				for _, c := range cs.Concept {
					codes = c.codes(codes)
				}
				css[cs.URL] = codes
			}
		}
	}
	var expand func(url string, depth int) ([]string, bool)
	expand = func(url string, depth int) ([]string, bool) {
		url, _, _ = strings.Cut(url, "|")
		if codes, ok := r4VS[url]; ok {
			return codes, true
		}
		vs := vss[url]
		if vs == nil || depth > 5 || len(vs.Compose.Exclude) > 0 {
			return nil, false
		}
		var codes []string
		for _, inc := range vs.Compose.Include {
			if len(inc.Filter) > 0 {
				return nil, false
			}
			for _, sub := range inc.ValueSet {
				c, ok := expand(sub, depth+1)
				if !ok {
					return nil, false
				}
				codes = append(codes, c...)
			}
			switch {
			case len(inc.Concept) > 0:
				for _, c := range inc.Concept {
					codes = append(codes, c.Code)
				}
			case inc.System != "":
				c, ok := css[inc.System]
				if !ok {
					return nil, false
				}
				codes = append(codes, c...)
			}
		}
		return codes, len(codes) > 0
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "package/StructureDefinition-") {
			continue
		}
		var sd structureDefinition
		if err := json.Unmarshal(files[n], &sd); err != nil {
			return v, fmt.Errorf("%s: %w", n, err)
		}
		if sd.Derivation != "constraint" || sd.Kind != "resource" {
			continue
		}
		p := wire.Profile{URL: sd.URL, Name: sd.Name, Type: sd.Type}
		for _, b := range sd.Snapshot.Element {
			var e element
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(b, &e); err != nil {
				return v, fmt.Errorf("%s: %w", n, err)
			}
			if err := json.Unmarshal(b, &raw); err != nil {
				return v, fmt.Errorf("%s: %w", n, err)
			}
			pe := wire.ProfileElem{ID: e.ID, Path: e.Path, SliceName: e.SliceName, Min: e.Min, Max: -1, MustSupport: e.MustSupport}
			if e.Max != "*" {
				fmt.Sscan(e.Max, &pe.Max)
			}
			for _, t := range e.Type {
				pe.Types = append(pe.Types, t.Code)
				if pe.Profile == "" && len(t.Profile) > 0 {
					pe.Profile = t.Profile[0]
				}
				for _, x := range t.Extension {
					if x.URL == typeMustSupport && x.ValueBoolean && e.MustSupport {
						pe.MSTypes = append(pe.MSTypes, t.Code)
					}
				}
			}
			for k, val := range raw {
				switch {
				case strings.HasPrefix(k, "fixed"):
					pe.Fixed = val
				case strings.HasPrefix(k, "pattern"):
					pe.Pattern = val
				}
			}
			if e.Binding != nil && e.Binding.Strength == "required" && e.Binding.ValueSet != "" {
				url, _, _ := strings.Cut(e.Binding.ValueSet, "|")
				if codes, ok := expand(url, 0); ok {
					pe.Required = url
					v.ValueSets[url] = codes
				}
			}
			if e.Slicing != nil {
				pe.Slicing = e.Slicing.Discriminator
				pe.Closed = e.Slicing.Rules == "closed"
			}
			for _, c := range e.Constraint {
				if c.Expression == "" || genericConstraint(c.Key) {
					continue
				}
				pe.Constraints = append(pe.Constraints, c)
			}
			p.Elements = append(p.Elements, pe)
		}
		v.Profiles = append(v.Profiles, p)
	}
	return v, nil
}

// genericConstraint reports whether key is an invariant every element
// (ele-1), resource (dom-*) or extension (ext-1) carries; the structural
// validator covers what of them matters and the profiles need none.
func genericConstraint(key string) bool {
	for _, p := range []string{"ele-", "dom-", "ext-"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// gzipJSON returns the gzip-compressed JSON of v (deterministic: no name or
// time in the header).
func gzipJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
