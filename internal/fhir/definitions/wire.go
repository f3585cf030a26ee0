package definitions

// Wire format of data/r4.json.gz; must match gen/main.go.

type wireFile struct {
	FHIRVersion  string              `json:"fhirVersion"`
	Types        []wireType          `json:"types"`
	ValueSets    map[string][]string `json:"valueSets"`
	SearchParams []wireSearchParam   `json:"searchParams"`
	Compartment  map[string][]string `json:"patientCompartment"`
	Regex        map[string]string   `json:"primitiveRegex"`
}

type wireType struct {
	Name     string     `json:"name"`
	Kind     string     `json:"kind"`
	Abstract bool       `json:"abstract,omitempty"`
	Base     string     `json:"base,omitempty"`
	Elements []wireElem `json:"elements"`
}

type wireElem struct {
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

type wireSearchParam struct {
	Code        string          `json:"code"`
	Type        string          `json:"type"`
	URL         string          `json:"url"`
	Description string          `json:"desc,omitempty"`
	Expression  string          `json:"expr,omitempty"`
	Base        []string        `json:"base"`
	Targets     []string        `json:"target,omitempty"`
	MultipleOr  *bool           `json:"multipleOr,omitempty"`
	MultipleAnd *bool           `json:"multipleAnd,omitempty"`
	Comparators []string        `json:"comparator,omitempty"`
	Modifiers   []string        `json:"modifier,omitempty"`
	Components  []wireComponent `json:"component,omitempty"`
}

type wireComponent struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}
