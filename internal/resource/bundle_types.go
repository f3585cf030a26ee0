package resource

import (
	"encoding/json"
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

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

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
