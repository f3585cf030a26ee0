// Package servicebase publishes the service base URLs of the certified API
// (ONC HTI-1, 45 CFR 170.404(b)(2); conformance.md §6): a FHIR R4
// collection Bundle of Endpoint and Organization resources, built from a
// configuration file that lists the organisations (name, NPI, address) and
// their FHIR bases, and a checker for every rule of the Inferno
// service-base-url test kit.
package servicebase

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
)

// NPISystem is the identifier system of a US National Provider Identifier.
const NPISystem = "http://hl7.org/fhir/sid/us-npi"

// MaxFileBytes bounds the configuration file.
const MaxFileBytes = 4 << 20

// File is the configuration file (JSON):
//
//	{"organizations": [{"name": "...", "npi": "1234567893",
//	  "address": {"line": ["1 Main St"], "city": "...", "state": "MA", "postalCode": "02139"},
//	  "endpoints": [{"name": "...", "address": "https://ehr.example.org/fhir"}]}]}
//
// An organisation without endpoints is served by this server's own FHIR
// base.
type File struct {
	Organizations []Organization `json:"organizations"`
}

// Organization is one organisation (a facility or practice) of the file.
type Organization struct {
	// ID is the Organization's resource id (default org-N).
	ID string `json:"id,omitempty"`
	// Name is the organisation's name.
	Name string `json:"name"`
	// NPI is its National Provider Identifier (10 digits).
	NPI string `json:"npi,omitempty"`
	// Address is its postal address (required by the rules).
	Address *Address `json:"address,omitempty"`
	// PartOf is the id of a parent Organization of the file whose
	// endpoints also serve this one.
	PartOf string `json:"partOf,omitempty"`
	// Endpoints are its FHIR bases; none = this server's base (unless
	// PartOf is set).
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Address is a postal address (FHIR Address).
type Address struct {
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
}

// Endpoint is one FHIR base URL.
type Endpoint struct {
	// Name describes the endpoint (default: the organisation's name).
	Name string `json:"name,omitempty"`
	// Address is the FHIR base URL (http or https).
	Address string `json:"address"`
}

// Load reads and checks a configuration file.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&limitReader{r: fh, n: MaxFileBytes + 1}); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if buf.Len() > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileBytes)
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

type limitReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// Parse decodes and checks a configuration file's content.
func Parse(b []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("service base URL file: %w", err)
	}
	ids := map[string]bool{}
	for i := range f.Organizations {
		o := &f.Organizations[i]
		if strings.TrimSpace(o.Name) == "" {
			return nil, fmt.Errorf("service base URL file: organization %d has no name", i+1)
		}
		if o.ID == "" {
			o.ID = fmt.Sprintf("org-%d", i+1)
		}
		if !validID(o.ID) || ids[o.ID] {
			return nil, fmt.Errorf("service base URL file: organization %d: invalid or duplicate id %q", i+1, o.ID)
		}
		ids[o.ID] = true
		if o.NPI != "" && !ValidNPI(o.NPI) {
			return nil, fmt.Errorf("service base URL file: organization %q: NPI %q is not 10 digits with a valid check digit", o.Name, o.NPI)
		}
		for _, e := range o.Endpoints {
			if err := checkBase(e.Address); err != nil {
				return nil, fmt.Errorf("service base URL file: organization %q: %w", o.Name, err)
			}
		}
	}
	for _, o := range f.Organizations {
		if o.PartOf != "" && !ids[o.PartOf] {
			return nil, fmt.Errorf("service base URL file: organization %q: partOf %q is not an organization of the file", o.Name, o.PartOf)
		}
	}
	return &f, nil
}

// Default is the file used without configuration: one organisation served
// by this server's base. It has no address, which the rules require: Check
// reports it until a file is configured.
func Default(name string) *File {
	return &File{Organizations: []Organization{{ID: "org-1", Name: name}}}
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkBase reports whether s is an absolute http(s) URL without query or
// fragment.
func checkBase(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("endpoint address %q is not an http(s) base URL", s)
	}
	return nil
}

// ValidNPI reports whether s is a 10-digit NPI with a valid Luhn check
// digit (computed with the 80840 prefix, per CMS).
func ValidNPI(s string) bool {
	if len(s) != 10 {
		return false
	}
	sum := 24 // the prefix 80840's contribution
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if i%2 == 0 && i < 9 { // doubled digits: positions 1,3,5,7,9 from the left
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// Build returns the collection Bundle (JSON) for f; fhirBase is this
// server's FHIR base (the endpoint of organisations without their own)
// and the base of the entries' fullUrls; at stamps Bundle.timestamp and
// meta.lastUpdated.
func Build(f *File, fhirBase string, at time.Time) []byte {
	fhirBase = strings.TrimSuffix(fhirBase, "/")
	type entry struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	}
	var endpoints, orgs []entry
	epByAddr := map[string]string{} // address -> Endpoint id
	for _, o := range f.Organizations {
		eps := o.Endpoints
		if len(eps) == 0 && o.PartOf == "" {
			eps = []Endpoint{{Address: fhirBase}}
		}
		var refs []any
		for _, e := range eps {
			addr := strings.TrimSuffix(e.Address, "/")
			id, ok := epByAddr[addr]
			if !ok {
				id = endpointID(addr)
				epByAddr[addr] = id
				name := e.Name
				if name == "" {
					name = o.Name + " FHIR R4 API"
				}
				endpoints = append(endpoints, entry{fhirBase + "/Endpoint/" + id, map[string]any{
					"resourceType": "Endpoint",
					"id":           id,
					"status":       "active",
					"connectionType": map[string]any{
						"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
						"code":   "hl7-fhir-rest",
					},
					"name": name,
					"payloadType": []any{map[string]any{"coding": []any{map[string]any{
						"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
						"code":   "any",
					}}}},
					"payloadMimeType": []any{"application/fhir+json"},
					"address":         addr,
				}})
			}
			refs = append(refs, map[string]any{"reference": "Endpoint/" + id})
		}
		org := map[string]any{
			"resourceType": "Organization",
			"id":           o.ID,
			"active":       true,
			"name":         o.Name,
		}
		if o.NPI != "" {
			org["identifier"] = []any{map[string]any{"system": NPISystem, "value": o.NPI}}
		}
		if o.Address != nil {
			org["address"] = []any{o.Address}
		}
		if len(refs) > 0 {
			org["endpoint"] = refs
		}
		if o.PartOf != "" {
			org["partOf"] = map[string]any{"reference": "Organization/" + o.PartOf}
		}
		orgs = append(orgs, entry{fhirBase + "/Organization/" + o.ID, org})
	}
	ts := fhirtime.FormatInstant(at)
	body := map[string]any{
		"resourceType": "Bundle",
		"id":           "service-base-urls",
		"meta":         map[string]any{"lastUpdated": ts},
		"type":         "collection",
		"timestamp":    ts,
		"entry":        append(endpoints, orgs...),
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // maps of strings and slices always marshal
	}
	return b
}

// endpointID derives a stable Endpoint id from its address.
func endpointID(addr string) string {
	h := sha256.Sum256([]byte(addr))
	return "ep-" + hex.EncodeToString(h[:8])
}

// BundleFor builds the Bundle from the file at path, or from Default(name)
// when path is empty.
func BundleFor(path, name, fhirBase string, at time.Time) ([]byte, error) {
	f := Default(name)
	if path != "" {
		var err error
		if f, err = Load(path); err != nil {
			return nil, err
		}
	}
	return Build(f, fhirBase, at), nil
}
