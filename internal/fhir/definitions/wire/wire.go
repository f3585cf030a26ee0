// Package wire is the format of the generated R4 definitions file
// (data/r4.json.gz): written by the generator in ../gen, read by package
// definitions. Keeping it in one place keeps the two in step.
package wire

import "encoding/json"

// File is the whole generated document.
type File struct {
	FHIRVersion  string              `json:"fhirVersion"`
	Types        []Type              `json:"types"`
	ValueSets    map[string][]string `json:"valueSets"`
	SearchParams []SearchParam       `json:"searchParams"`
	Compartment  map[string][]string `json:"patientCompartment"`
	Regex        map[string]string   `json:"primitiveRegex"`
}

// Type is one resource, datatype or primitive type with its elements.
type Type struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Abstract bool   `json:"abstract,omitempty"`
	Base     string `json:"base,omitempty"`
	Elements []Elem `json:"elements"`
}

// Elem is one element definition (short JSON keys keep the file small).
type Elem struct {
	Path       string   `json:"p"`
	Min        int      `json:"n,omitempty"`
	Max        int      `json:"x"`
	Types      []string `json:"t,omitempty"`
	Targets    []string `json:"tp,omitempty"`
	ContentRef string   `json:"cr,omitempty"`
	BindStr    string   `json:"bs,omitempty"`
	BindVS     string   `json:"bv,omitempty"`
	Modifier   bool     `json:"m,omitempty"`
	Summary    bool     `json:"s,omitempty"`
}

// SearchParam is one R4 SearchParameter.
type SearchParam struct {
	Code        string      `json:"code"`
	Type        string      `json:"type"`
	URL         string      `json:"url"`
	Description string      `json:"desc,omitempty"`
	Expression  string      `json:"expr,omitempty"`
	Base        []string    `json:"base"`
	Targets     []string    `json:"target,omitempty"`
	MultipleOr  *bool       `json:"multipleOr,omitempty"`
	MultipleAnd *bool       `json:"multipleAnd,omitempty"`
	Comparators []string    `json:"comparator,omitempty"`
	Modifiers   []string    `json:"modifier,omitempty"`
	Components  []Component `json:"component,omitempty"`
}

// Component is one component of a composite SearchParameter.
type Component struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}

// USCore is the generated extract of the US Core implementation guide
// packages (data/uscore.json): the SearchParameters they define beyond R4
// and, per version, what the us-core-server CapabilityStatement asks of a
// server.
type USCore struct {
	// SearchParams are the US Core SearchParameters whose code R4 does not
	// define for their base, the union over the versions read.
	SearchParams []SearchParam `json:"searchParams"`
	// Notes records where the versions differ and how the union was taken.
	Notes []string `json:"notes,omitempty"`
	// Versions holds one entry per IG version, oldest first.
	Versions []USCoreVersion `json:"versions"`
}

// USCoreVersion is what one US Core version's server CapabilityStatement
// lists.
type USCoreVersion struct {
	Version   string           `json:"version"`
	Resources []USCoreResource `json:"resources"`
}

// USCoreResource is one rest.resource of the us-core-server
// CapabilityStatement.
type USCoreResource struct {
	Type         string              `json:"type"`
	Expectation  string              `json:"expectation,omitempty"`
	Profiles     []string            `json:"profiles,omitempty"`
	Search       []USCoreSearch      `json:"search,omitempty"`
	Combinations []USCoreCombination `json:"combinations,omitempty"`
	Includes     []string            `json:"includes,omitempty"`
	RevIncludes  []string            `json:"revIncludes,omitempty"`
}

// USCoreSearch is one rest.resource.searchParam.
type USCoreSearch struct {
	Name        string `json:"name"`
	Definition  string `json:"definition"`
	Type        string `json:"type"`
	Expectation string `json:"expectation,omitempty"`
}

// USCoreCombination is one search-parameter-combination extension.
type USCoreCombination struct {
	Expectation string   `json:"expectation,omitempty"`
	Required    []string `json:"required"`
}

// Source is the subset of a FHIR SearchParameter resource (as published in
// the R4 specification and in implementation guide packages) that the
// generators read.
type Source struct {
	URL         string   `json:"url"`
	Version     string   `json:"version"`
	Code        string   `json:"code"`
	Type        string   `json:"type"`
	Description string   `json:"description"`
	Expression  string   `json:"expression"`
	Base        []string `json:"base"`
	Target      []string `json:"target"`
	MultipleOr  *bool    `json:"multipleOr"`
	MultipleAnd *bool    `json:"multipleAnd"`
	Comparator  []string `json:"comparator"`
	Modifier    []string `json:"modifier"`
	Component   []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
}

// SearchParam converts the source to the generated form.
func (s *Source) SearchParam() SearchParam {
	w := SearchParam{
		Code: s.Code, Type: s.Type, URL: s.URL, Description: s.Description,
		Expression: s.Expression, Base: s.Base, Targets: s.Target,
		MultipleOr: s.MultipleOr, MultipleAnd: s.MultipleAnd,
		Comparators: s.Comparator, Modifiers: s.Modifier,
	}
	for _, c := range s.Component {
		w.Components = append(w.Components, Component{Definition: c.Definition, Expression: c.Expression})
	}
	return w
}

// Profiles is the generated extract of the US Core profiles
// (data/uscore-profiles.json.gz) used by package profile.
type Profiles struct {
	Versions []ProfileVersion `json:"versions"`
}

// ProfileVersion holds one US Core version's resource profiles and the
// codes of the value sets their required bindings name that could be
// enumerated (from the IG or R4); others are absent (bindings to them are
// not checked).
type ProfileVersion struct {
	Version   string              `json:"version"`
	Profiles  []Profile           `json:"profiles"`
	ValueSets map[string][]string `json:"valueSets"`
}

// Profile is one constraint StructureDefinition on a resource type.
type Profile struct {
	URL      string        `json:"url"`
	Name     string        `json:"name"`
	Type     string        `json:"type"`
	Elements []ProfileElem `json:"elements"`
}

// ProfileElem is one snapshot element of a profile, with what validation
// uses.
type ProfileElem struct {
	ID        string          `json:"id"`
	Path      string          `json:"path"`
	SliceName string          `json:"slice,omitempty"`
	Min       int             `json:"min,omitempty"`
	Max       int             `json:"max"` // -1 = *
	Types     []string        `json:"types,omitempty"`
	Profile   string          `json:"profile,omitempty"` // first type profile (extensions)
	Fixed     json.RawMessage `json:"fixed,omitempty"`
	Pattern   json.RawMessage `json:"pattern,omitempty"`
	Required  string          `json:"required,omitempty"` // value set of a required binding
	Slicing   []Discriminator `json:"slicing,omitempty"`
	Closed    bool            `json:"closed,omitempty"`
	// MustSupport is the element's mustSupport flag.
	MustSupport bool `json:"ms,omitempty"`
	// MSTypes are the types of a choice element flagged Must Support by
	// the elementdefinition-type-must-support extension.
	MSTypes []string `json:"msTypes,omitempty"`
	// Constraints are the element's invariants other than the generic
	// ones every element, resource or extension carries (ele-*, dom-*,
	// ext-*): the resource's own (obs-6) and the profiles' (us-core-2).
	Constraints []Constraint `json:"constraints,omitempty"`
}

// Constraint is one invariant of an element: a FHIRPath expression that
// must be true of each of the element's values.
type Constraint struct {
	// Key names the invariant ("us-core-6").
	Key string `json:"key"`
	// Severity is "error" or "warning".
	Severity string `json:"severity"`
	// Human is the invariant's text for people.
	Human string `json:"human"`
	// Expression is the FHIRPath expression.
	Expression string `json:"expression"`
}

// Discriminator is one slicing discriminator.
type Discriminator struct {
	Type string `json:"type"`
	Path string `json:"path"`
}
