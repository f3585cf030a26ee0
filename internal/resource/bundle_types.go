package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/store"
)

// Wire types for the Bundles the service renders. Resources are embedded
// as raw JSON so stored bodies are served byte for byte.

type bundle struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Meta         *bundleMeta    `json:"meta,omitempty"`
	Type         string         `json:"type"`
	Timestamp    string         `json:"timestamp,omitempty"`
	Total        *int           `json:"total,omitempty"`
	Link         []bundleLink   `json:"link,omitempty"`
	Entry        []*bundleEntry `json:"entry,omitempty"`
}

type bundleMeta struct {
	LastUpdated string `json:"lastUpdated,omitempty"`
}

type bundleLink = Link

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *entrySearch    `json:"search,omitempty"`
	Request  *entryRequest   `json:"request,omitempty"`
	Response *entryResponse  `json:"response,omitempty"`
}

type entrySearch struct {
	Mode string `json:"mode,omitempty"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// result is the Result of a searchset or history Bundle: Returned counts
// its entries with a fullUrl (the resources, not an OperationOutcome).
func (b *bundle) result() *Result {
	n := 0
	for _, e := range b.Entry {
		if e.FullURL != "" {
			n++
		}
	}
	return &Result{Status: http.StatusOK, Body: b.bytes(), Returned: n}
}

// tally adds to res what one batch or transaction response entry be, the
// answer to an entry whose result is r, returns as read and wrote: a
// write (an entry with a location) its version, a read 1, a search or
// history the resources of its Bundle. Resources a write echoes back
// were sent by the client: they do not count.
func (res *Result) tally(be *bundleEntry, r *Result) {
	if r == nil {
		return
	}
	if be.Response != nil && be.Response.Location != "" {
		if r.Resource != nil && !r.Unchanged {
			res.Written = append(res.Written, r.Resource)
		}
		return
	}
	switch {
	case len(be.Resource) == 0:
	case r.Resource != nil:
		res.Returned++
	default:
		res.Returned += r.Returned
	}
}

// statusLine renders "201 Created".
func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// fullURL is the absolute URL of a resource.
func (s *Service) fullURL(typ, id string) string { return s.base + "/" + typ + "/" + id }

// versionLocation is "Type/id/_history/v".
func versionLocation(r *store.Resource) string {
	return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
}

func instant(r *store.Resource) string { return fhirtime.FormatInstant(r.LastUpdated) }

func (s *Service) newBundle(typ string) *bundle {
	return &bundle{
		ResourceType: "Bundle",
		ID:           NewID(),
		Meta:         &bundleMeta{LastUpdated: fhirtime.FormatInstant(s.timestamp())},
		Type:         typ,
	}
}

// errTooLarge marks a Bundle that would exceed the byte budget it is
// rendered under (Config.MaxResponseBytes, or what a batch has left).
var errTooLarge = errors.New("resource: the response would exceed its size limit")

// size bounds the bytes e adds to a rendered Bundle: its resource and
// outcome byte for byte, the other members with the room their keys and
// punctuation take. (The strings are URLs, ids, status lines and
// instants: JSON escaping does not grow them.)
func (e *bundleEntry) size() int64 {
	n := len(e.FullURL) + len(e.Resource) + 32
	if e.Search != nil {
		n += len(e.Search.Mode) + 24
	}
	if e.Request != nil {
		n += len(e.Request.Method) + len(e.Request.URL) + 40
	}
	if r := e.Response; r != nil {
		n += len(r.Status) + len(r.Location) + len(r.Etag) + len(r.LastModified) + len(r.Outcome) + 96
	}
	return int64(n)
}

// size bounds the bytes of the rendered Bundle.
func (b *bundle) size() int64 {
	n := int64(256 + len(b.Type))
	for _, l := range b.Link {
		n += int64(len(l.Relation) + len(l.URL) + 32)
	}
	for _, e := range b.Entry {
		n += e.size() + 1
	}
	return n
}

// bytes renders the Bundle as JSON. It writes entry resources byte for byte
// (they are stored compact JSON produced by MarshalResource) instead of
// letting encoding/json re-validate and compact every one of them, which
// dominated the cost of large search pages.
func (b *bundle) bytes() []byte {
	buf := make([]byte, 0, b.size())
	field := func(name string, v any) {
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, name...)
		buf = append(buf, '"', ':')
		buf = appendJSON(buf, v)
	}
	buf = append(buf, '{')
	field("resourceType", b.ResourceType)
	if b.ID != "" {
		field("id", b.ID)
	}
	if b.Meta != nil {
		field("meta", b.Meta)
	}
	field("type", b.Type)
	if b.Timestamp != "" {
		field("timestamp", b.Timestamp)
	}
	if b.Total != nil {
		field("total", *b.Total)
	}
	if len(b.Link) > 0 {
		field("link", b.Link)
	}
	if len(b.Entry) > 0 {
		buf = append(buf, `,"entry":[`...)
		for i, e := range b.Entry {
			if i > 0 {
				buf = append(buf, ',')
			}
			start := len(buf)
			buf = append(buf, '{')
			sep := func() {
				if len(buf) > start+1 {
					buf = append(buf, ',')
				}
			}
			if e.FullURL != "" {
				sep()
				buf = append(buf, `"fullUrl":`...)
				buf = appendJSON(buf, e.FullURL)
			}
			if len(e.Resource) > 0 {
				sep()
				buf = append(buf, `"resource":`...)
				buf = append(buf, e.Resource...)
			}
			if e.Search != nil {
				sep()
				buf = append(buf, `"search":`...)
				buf = appendJSON(buf, e.Search)
			}
			if e.Request != nil {
				sep()
				buf = append(buf, `"request":`...)
				buf = appendJSON(buf, e.Request)
			}
			if e.Response != nil {
				sep()
				buf = append(buf, `"response":`...)
				buf = appendJSON(buf, e.Response)
			}
			buf = append(buf, '}')
		}
		buf = append(buf, ']')
	}
	return append(buf, '}')
}

// appendJSON appends v encoded without HTML escaping.
func appendJSON(buf []byte, v any) []byte {
	var b bytes.Buffer
	if err := encodeValue(&b, v); err != nil {
		return append(buf, "null"...)
	}
	return append(buf, b.Bytes()...)
}
