package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Resource is a FHIR resource as the server sent it: the raw JSON plus the
// fields every client needs. Raw is kept byte for byte (decimals and
// unknown elements survive); decode it into your own types with Decode.
type Resource struct {
	// Type is the resourceType, e.g. "Patient".
	Type string
	// ID is the logical id.
	ID string
	// VersionID is meta.versionId (or the ETag's version).
	VersionID string
	// LastUpdated is meta.lastUpdated, zero if absent.
	LastUpdated time.Time
	// Raw is the resource's JSON; empty when the server answered with
	// Prefer: return=minimal.
	Raw json.RawMessage
}

// Decode unmarshals the resource's JSON into v, keeping numbers exact
// when v holds interface values (json.Number).
func (r *Resource) Decode(v any) error {
	if r == nil || len(r.Raw) == 0 {
		return errors.New("fhir client: resource has no body")
	}
	d := json.NewDecoder(bytes.NewReader(r.Raw))
	d.UseNumber()
	return d.Decode(v)
}

// Reference returns "Type/id", the relative reference to the resource.
func (r *Resource) Reference() string { return r.Type + "/" + r.ID }

// ParseResource reads the resourceType, id, meta.versionId and
// meta.lastUpdated of a resource's JSON.
func ParseResource(raw []byte) (*Resource, error) {
	var v struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errors.New("fhir client: invalid resource JSON")
	}
	if v.ResourceType == "" {
		return nil, errors.New("fhir client: JSON has no resourceType")
	}
	r := &Resource{Type: v.ResourceType, ID: v.ID, VersionID: v.Meta.VersionID, Raw: json.RawMessage(raw)}
	if v.Meta.LastUpdated != "" {
		if t, err := time.Parse(time.RFC3339Nano, v.Meta.LastUpdated); err == nil {
			r.LastUpdated = t
		}
	}
	return r, nil
}

// resourceFromResponse builds a Resource from a 2xx answer: the body when
// there is one, else the Location, ETag and Last-Modified headers.
func resourceFromResponse(body []byte, h http.Header) (*Resource, error) {
	if len(bytes.TrimSpace(body)) > 0 {
		r, err := ParseResource(body)
		if err != nil {
			return nil, err
		}
		if r.Type == "OperationOutcome" && h.Get("Location") != "" {
			// return=OperationOutcome: describe the resource by its headers.
			return resourceFromHeaders(h), nil
		}
		if r.VersionID == "" {
			r.VersionID = etagVersion(h.Get("ETag"))
		}
		return r, nil
	}
	return resourceFromHeaders(h), nil
}

// resourceFromHeaders describes a resource by its Location
// ([base]/Type/id/_history/vid), ETag and Last-Modified headers.
func resourceFromHeaders(h http.Header) *Resource {
	r := &Resource{VersionID: etagVersion(h.Get("ETag"))}
	if loc := h.Get("Location"); loc != "" {
		if i := strings.IndexAny(loc, "?#"); i >= 0 {
			loc = loc[:i]
		}
		parts := strings.Split(strings.TrimRight(loc, "/"), "/")
		if n := len(parts); n >= 4 && parts[n-2] == "_history" {
			r.Type, r.ID = parts[n-4], parts[n-3]
			if r.VersionID == "" {
				r.VersionID = parts[n-1]
			}
		} else if n >= 2 {
			r.Type, r.ID = parts[n-2], parts[n-1]
		}
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			r.LastUpdated = t
		}
	}
	return r
}

// etagVersion returns the version in a FHIR ETag, W/"3" → 3.
func etagVersion(etag string) string {
	etag = strings.TrimPrefix(strings.TrimSpace(etag), "W/")
	return strings.Trim(etag, `"`)
}

// Bundle is a FHIR Bundle: a search or history page, or a transaction or
// batch request or response.
type Bundle struct {
	// Type is searchset, history, transaction, transaction-response, batch,
	// batch-response or collection.
	Type string
	// Total is the number of matches, when the server reported it.
	Total *int
	// Entries are the entries in order.
	Entries []BundleEntry
	// Links maps each link relation (self, next, previous…) to its URL.
	Links map[string]string
	// Raw is the Bundle's JSON as received; ignored when sending a Bundle
	// built from Entries.
	Raw json.RawMessage
}

// BundleEntry is one Bundle.entry.
type BundleEntry struct {
	// FullURL is the entry's fullUrl.
	FullURL string
	// Resource is the entry's resource, nil if it has none.
	Resource *Resource
	// SearchMode is search.mode (match, include, outcome) in a searchset.
	SearchMode string
	// Request is the entry's request, for transaction and batch Bundles.
	Request *EntryRequest
	// Response is the entry's response in transaction-response and
	// batch-response Bundles (and history).
	Response *EntryResponse
}

// EntryRequest is Bundle.entry.request: what a transaction or batch entry
// asks the server to do.
type EntryRequest struct {
	// Method is GET, POST, PUT, PATCH or DELETE.
	Method string `json:"method"`
	// URL is relative to the base, e.g. "Patient" or "Patient/123" or a
	// conditional "Patient?identifier=x|1".
	URL string `json:"url"`
	// IfNoneMatch, IfModifiedSince, IfMatch and IfNoneExist are the
	// conditional headers of the entry, as in the REST API.
	IfNoneMatch     string `json:"ifNoneMatch,omitempty"`
	IfModifiedSince string `json:"ifModifiedSince,omitempty"`
	IfMatch         string `json:"ifMatch,omitempty"`
	IfNoneExist     string `json:"ifNoneExist,omitempty"`
}

// EntryResponse is Bundle.entry.response: the outcome of one entry.
type EntryResponse struct {
	// Status is the HTTP status line, e.g. "201 Created".
	Status string
	// Location is the created or updated resource's versioned URL.
	Location string
	// ETag is the resource's ETag.
	ETag string
	// LastModified is the resource's modification time, zero if absent.
	LastModified time.Time
	// Outcome is the entry's OperationOutcome (errors in a batch).
	Outcome *OperationOutcome
}

// StatusCode returns the numeric status of Status ("201 Created" → 201),
// or 0 if it cannot be read.
func (r *EntryResponse) StatusCode() int {
	var n int
	fmt.Sscanf(r.Status, "%d", &n)
	return n
}

// Resources returns the entries' resources whose search mode is match
// (or that have no search mode), skipping included resources and
// OperationOutcomes.
func (b *Bundle) Resources() []*Resource {
	var out []*Resource
	for _, e := range b.Entries {
		if e.Resource == nil || (e.SearchMode != "" && e.SearchMode != "match") {
			continue
		}
		out = append(out, e.Resource)
	}
	return out
}

// ParseBundle decodes a Bundle's JSON.
func ParseBundle(raw []byte) (*Bundle, error) {
	var v struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Total        *int   `json:"total"`
		Link         []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Search   *struct {
				Mode string `json:"mode"`
			} `json:"search"`
			Request  *EntryRequest `json:"request"`
			Response *struct {
				Status       string          `json:"status"`
				Location     string          `json:"location"`
				ETag         string          `json:"etag"`
				LastModified string          `json:"lastModified"`
				Outcome      json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errors.New("fhir client: invalid Bundle JSON")
	}
	if v.ResourceType != "Bundle" {
		return nil, fmt.Errorf("fhir client: expected a Bundle, got %q", truncate(v.ResourceType, 64))
	}
	b := &Bundle{Type: v.Type, Total: v.Total, Links: map[string]string{}, Raw: json.RawMessage(raw)}
	for _, l := range v.Link {
		if _, dup := b.Links[l.Relation]; !dup {
			b.Links[l.Relation] = l.URL
		}
	}
	for _, e := range v.Entry {
		be := BundleEntry{FullURL: e.FullURL, Request: e.Request}
		if len(e.Resource) > 0 && string(e.Resource) != "null" {
			r, err := ParseResource(e.Resource)
			if err != nil {
				return nil, fmt.Errorf("fhir client: Bundle entry: %w", err)
			}
			be.Resource = r
		}
		if e.Search != nil {
			be.SearchMode = e.Search.Mode
		}
		if e.Response != nil {
			er := &EntryResponse{Status: e.Response.Status, Location: e.Response.Location, ETag: e.Response.ETag}
			if e.Response.LastModified != "" {
				if t, err := time.Parse(time.RFC3339Nano, e.Response.LastModified); err == nil {
					er.LastModified = t
				}
			}
			if len(e.Response.Outcome) > 0 {
				er.Outcome = parseOutcome(e.Response.Outcome)
			}
			be.Response = er
		}
		b.Entries = append(b.Entries, be)
	}
	return b, nil
}

// MarshalJSON encodes the Bundle from Type, Total, Links and Entries (Raw
// is ignored), so a transaction can be built in Go.
func (b *Bundle) MarshalJSON() ([]byte, error) {
	type link struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl,omitempty"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Request  *EntryRequest   `json:"request,omitempty"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Total        *int    `json:"total,omitempty"`
		Link         []link  `json:"link,omitempty"`
		Entry        []entry `json:"entry,omitempty"`
	}{ResourceType: "Bundle", Type: b.Type, Total: b.Total}
	for _, rel := range []string{"self", "first", "previous", "next", "last"} {
		if u, ok := b.Links[rel]; ok {
			out.Link = append(out.Link, link{rel, u})
		}
	}
	for _, e := range b.Entries {
		oe := entry{FullURL: e.FullURL, Request: e.Request}
		if e.Resource != nil {
			oe.Resource = e.Resource.Raw
		}
		out.Entry = append(out.Entry, oe)
	}
	return json.Marshal(out)
}
