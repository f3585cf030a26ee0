package resource

import (
	"strconv"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// SearchPage is one page of a search result (Search, SearchCompartment,
// Everything) as data: the resources as stored, the total, the paging
// links and the warnings. JSON renders it as a searchset Bundle.
type SearchPage struct {
	// Matches are the page's matches, in order (search mode "match").
	// Each Body is the stored JSON, or its _summary/_elements subset.
	Matches []store.Resource
	// Included are the resources _include and _revinclude added (search
	// mode "include"), bodies as in Matches.
	Included []store.Resource
	// Total is the number of matches over all pages, or -1 when not
	// computed (_total=none, or the store could not say).
	Total int
	// Links are the paging links: self, and first, previous and next
	// where they apply (next pages through the stored snapshot of the
	// ordered result, with _snapshot and _offset).
	Links []Link
	// Issues are warnings about the search (ignored parameters, adjusted
	// values), rendered as an OperationOutcome entry (search mode
	// "outcome").
	Issues []outcome.Issue
	// Timestamp is when the search ran (the Bundle's meta.lastUpdated).
	Timestamp time.Time

	base string // the FHIR base URL, for fullUrl
}

// Link is a link of a Bundle (Bundle.link).
type Link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// Next returns the URL of the next page, or "" on the last page.
func (p *SearchPage) Next() string {
	for _, l := range p.Links {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// entrySize bounds the bytes the entry of r adds to the Bundle
// (bundleEntry.size of the same entry).
func (p *SearchPage) entrySize(r *store.Resource, mode string) int64 {
	return int64(len(p.base)+2+len(r.Type)+len(r.ID)+len(r.Body)+32) + int64(len(mode)+24)
}

// size bounds the bytes of the rendered Bundle (bundle.size of the same
// Bundle).
func (p *SearchPage) size() int64 {
	n := int64(256 + len("searchset"))
	for _, l := range p.Links {
		n += int64(len(l.Relation) + len(l.URL) + 32)
	}
	if len(p.Issues) > 0 {
		n += int64(len(marshalJSON(outcome.Resource(p.Issues)))+32+len("outcome")+24) + 1
	}
	for i := range p.Matches {
		n += p.entrySize(&p.Matches[i], "match") + 1
	}
	for i := range p.Included {
		n += p.entrySize(&p.Included[i], "include") + 1
	}
	return n
}

// JSON renders the page as a searchset Bundle with a new id. It writes the
// resources byte for byte (they are stored compact JSON, or subsets of
// it) instead of letting encoding/json re-validate and compact every one
// of them, which dominated the cost of large search pages.
func (p *SearchPage) JSON() []byte {
	return p.AppendJSON(make([]byte, 0, p.size()))
}

// AppendJSON appends the searchset Bundle of the page (JSON) to buf.
func (p *SearchPage) AppendJSON(buf []byte) []byte {
	buf = append(buf, `{"resourceType":"Bundle","id":`...)
	buf = appendJSONString(buf, NewID())
	buf = append(buf, `,"meta":{"lastUpdated":`...)
	buf = appendJSONString(buf, fhirtime.FormatInstant(p.Timestamp))
	buf = append(buf, `},"type":"searchset"`...)
	if p.Total >= 0 {
		buf = append(buf, `,"total":`...)
		buf = strconv.AppendInt(buf, int64(p.Total), 10)
	}
	if len(p.Links) > 0 {
		buf = append(buf, `,"link":[`...)
		for i, l := range p.Links {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, `{"relation":`...)
			buf = appendJSONString(buf, l.Relation)
			buf = append(buf, `,"url":`...)
			buf = appendJSONString(buf, l.URL)
			buf = append(buf, '}')
		}
		buf = append(buf, ']')
	}
	if len(p.Issues) == 0 && len(p.Matches) == 0 && len(p.Included) == 0 {
		return append(buf, '}')
	}
	buf = append(buf, `,"entry":[`...)
	first := true
	if len(p.Issues) > 0 {
		buf = append(buf, `{"resource":`...)
		buf = append(buf, marshalJSON(outcome.Resource(p.Issues))...)
		buf = append(buf, `,"search":{"mode":"outcome"}}`...)
		first = false
	}
	entry := func(r *store.Resource, mode string) {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, `{"fullUrl":`...)
		if plainJSON(p.base) && plainJSON(r.Type) && plainJSON(r.ID) {
			buf = append(buf, '"')
			buf = append(buf, p.base...)
			buf = append(buf, '/')
			buf = append(buf, r.Type...)
			buf = append(buf, '/')
			buf = append(buf, r.ID...)
			buf = append(buf, '"')
		} else {
			buf = appendJSON(buf, p.base+"/"+r.Type+"/"+r.ID)
		}
		if len(r.Body) > 0 {
			buf = append(buf, `,"resource":`...)
			buf = append(buf, r.Body...)
		}
		buf = append(buf, `,"search":{"mode":"`...)
		buf = append(buf, mode...)
		buf = append(buf, `"}}`...)
	}
	for i := range p.Matches {
		entry(&p.Matches[i], "match")
	}
	for i := range p.Included {
		entry(&p.Included[i], "include")
	}
	return append(buf, "]}"...)
}

// appendJSONString appends s as a JSON string as encoding/json writes it
// without HTML escaping; strings of printable ASCII without '"' and '\'
// (URLs, ids, instants) are copied as they are.
func appendJSONString(buf []byte, s string) []byte {
	if !plainJSON(s) {
		return appendJSON(buf, s)
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// plainJSON reports whether s is printable ASCII without '"' and '\',
// which JSON strings hold as they are.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Returned is the number of resources the page returns as read: its
// matches and included resources (interaction.Outcome.Returned).
func (p *SearchPage) Returned() int { return len(p.Matches) + len(p.Included) }
