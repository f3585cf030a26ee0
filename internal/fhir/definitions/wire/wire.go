// Package wire is the format of the generated R4 definitions file
// (data/r4.json.gz): written by the generator in ../gen, read by package
// definitions. Keeping it in one place keeps the two in step.
package wire

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
