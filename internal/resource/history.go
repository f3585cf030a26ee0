package resource

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// HistoryCursorParam is the query parameter carrying the opaque history
// paging cursor in next links.
const HistoryCursorParam = "_cursor"

// HistoryPage is one page of a history (History) as data: the versions
// as stored, newest first, the total and the paging links. JSON renders it
// as a history Bundle.
type HistoryPage struct {
	// Versions are the page's versions, newest first; a deleted version
	// has no Body.
	Versions []store.Resource
	// Total is the number of versions over all pages; -1 when there are
	// more than the count's limit (Config.HistoryTotalLimit), and the
	// Bundle has no total.
	Total int
	// Links are the paging links: self, and next where there is one (with
	// the opaque HistoryCursorParam).
	Links []Link
	// Timestamp is when the history was read (the Bundle's
	// meta.lastUpdated).
	Timestamp time.Time

	svc *Service // renders the entries (fullUrl)
}

// JSON renders the page as a history Bundle with a new id.
func (p *HistoryPage) JSON() []byte { return p.bundle().bytes() }

// Returned is the number of versions the page returns as read
// (interaction.Outcome.Returned).
func (p *HistoryPage) Returned() int { return len(p.Versions) }

// bundle is the history Bundle of the page.
func (p *HistoryPage) bundle() *bundle {
	b := &bundle{ResourceType: "Bundle", ID: NewID(), Meta: &bundleMeta{LastUpdated: fhirtime.FormatInstant(p.Timestamp)}, Type: "history"}
	if p.Total >= 0 { // -1: more versions than the count's limit
		total := p.Total
		b.Total = &total
	}
	for _, l := range p.Links {
		b.Link = append(b.Link, bundleLink(l))
	}
	for i := range p.Versions {
		b.Entry = append(b.Entry, p.svc.historyEntry(&p.Versions[i]))
	}
	return b
}

// result is the page as the Result of a batch entry.
func (p *HistoryPage) result() *Result {
	return &Result{Status: http.StatusOK, Body: p.JSON(), Returned: p.Returned()}
}

// History returns a page of history (R4 http.html#history): of one
// resource (typ and id set), of a type (typ set) or of the whole system
// (neither). Supported parameters: _since (instant or dateTime), _count,
// _at (the versions current at some time in the period of its value),
// and the paging cursor of next links. _list is not supported (400 when
// strict, ignored otherwise); unknown parameters likewise.
func (s *Service) History(ctx context.Context, typ, id string, params url.Values, strict bool) (*HistoryPage, error) {
	p, err := s.history(ctx, typ, id, params, strict, s.maxResp)
	if errors.Is(err, errTooLarge) {
		return nil, s.pageTooLarge("history page", "lower _count")
	}
	return p, err
}

// history is History for a Bundle of at most limit bytes (else
// errTooLarge).
func (s *Service) history(ctx context.Context, typ, id string, params url.Values, strict bool, limit int64) (*HistoryPage, error) {
	op := InteractionHistorySystem
	if typ != "" {
		if err := s.checkType(typ); err != nil {
			return nil, err
		}
		op = InteractionHistoryType
		if id != "" {
			if err := checkID(id); err != nil {
				return nil, err
			}
			op = InteractionHistoryInstance
		}
	}
	if err := s.access.Check(ctx, op, typ); err != nil {
		return nil, err
	}
	hq, links, onlyTotal, err := s.historyParams(params, strict)
	if err != nil {
		return nil, err
	}
	hq.Type, hq.ID, hq.Filter = typ, id, s.access.Filter(ctx)
	if id == "" && !onlyTotal {
		hq.TotalLimit = s.histTotal
	}
	if id == "" {
		// Type and system history list resources like a search: only
		// what the caller may match (s), which a granular s scope
		// narrows and a type granted r alone never is.
		if mf, ok := s.access.(MatchFilterer); ok {
			if m := mf.MatchFilter(ctx); m != nil {
				hq.Filter = m
			}
		}
	}
	if id != "" && hq.Filter != nil {
		// A resource outside the filter is a 404, and so is one that does
		// not exist, whatever the period asked for: an empty page for the
		// one would tell it from the other.
		cur, err := s.current(ctx, s.st, typ, id, false)
		if err != nil {
			if errors.Is(err, errHidden) {
				return nil, notFound(typ, id)
			}
			return nil, s.internal(ctx, "history", err)
		}
		if cur == nil {
			return nil, notFound(typ, id)
		}
	}
	page, err := s.st.History(ctx, hq)
	if errors.Is(err, store.ErrNotFound) && hq.Before != "" {
		return nil, outcome.BadRequest("invalid %s paging cursor", HistoryCursorParam)
	}
	if err != nil {
		return nil, s.internal(ctx, "history", err)
	}
	if id != "" && page.Total == 0 && hq.Before == "" {
		// No version in the period (_since, _at) of a resource that
		// exists is an empty page; of one that does not, a 404. Under a
		// filter the resource was found above.
		if hq.Since.IsZero() && hq.AtFrom.IsZero() {
			return nil, notFound(typ, id)
		}
		if hq.Filter == nil {
			if _, err := s.st.Read(ctx, typ, id); errors.Is(err, store.ErrNotFound) {
				return nil, notFound(typ, id)
			} else if err != nil {
				return nil, s.internal(ctx, "history", err)
			}
		}
	}
	path := s.base
	if typ != "" {
		path += "/" + typ
		if id != "" {
			path += "/" + id
		}
	}
	path += "/_history"
	hp := &HistoryPage{Total: page.Total, Timestamp: s.timestamp(), svc: s}
	self := cloneValues(links)
	if hq.Before != "" {
		self.Set(HistoryCursorParam, hq.Before)
	}
	hp.Links = append(hp.Links, Link{Relation: "self", URL: withQuery(path, self)})
	if page.Next != "" && !onlyTotal {
		next := cloneValues(links)
		if next.Get("_count") == "" {
			next.Set("_count", strconv.Itoa(hq.Count))
		}
		next.Set(HistoryCursorParam, page.Next)
		hp.Links = append(hp.Links, Link{Relation: "next", URL: withQuery(path, next)})
	}
	if onlyTotal {
		return hp, nil
	}
	size := hp.bundle().size()
	for i := range page.Versions {
		if size += s.historyEntry(&page.Versions[i]).size() + 1; size > limit {
			return nil, errTooLarge
		}
	}
	hp.Versions = page.Versions
	return hp, nil
}

func (s *Service) historyEntry(v *store.Resource) *bundleEntry {
	e := &bundleEntry{FullURL: s.fullURL(v.Type, v.ID)}
	method := v.Method
	switch {
	case v.Deleted:
		method = http.MethodDelete
	case method == "":
		method = http.MethodPut
		if v.VersionID == 1 {
			method = http.MethodPost
		}
	}
	req := &entryRequest{Method: method, URL: v.Type + "/" + v.ID}
	resp := &entryResponse{Etag: ETag(v.VersionID), LastModified: instant(v)}
	switch {
	case v.Deleted:
		resp.Status = statusLine(http.StatusNoContent)
	case method == http.MethodPost:
		req.URL = v.Type
		resp.Status = statusLine(http.StatusCreated)
		resp.Location = versionLocation(v)
	case v.VersionID == 1:
		resp.Status = statusLine(http.StatusCreated)
		resp.Location = versionLocation(v)
	default:
		resp.Status = statusLine(http.StatusOK)
	}
	if !v.Deleted {
		e.Resource = v.Body
	}
	e.Request, e.Response = req, resp
	return e
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// historyParams checks the parameters of a history interaction and returns
// the query (without type, id and filter), the parameters for paging links
// and whether only the total is wanted (_count=0).
func (s *Service) historyParams(params url.Values, strict bool) (store.HistoryQuery, url.Values, bool, error) {
	hq := store.HistoryQuery{Count: s.defHistory}
	links := url.Values{}
	onlyTotal := false
	for key, vals := range params {
		if len(vals) == 0 {
			continue
		}
		v := vals[0]
		switch key {
		case "_format", "_pretty":
		case "_since":
			v = fhirtime.QueryValue(v)
			r, err := fhirtime.Parse(v)
			if err != nil || r.Precision < fhirtime.Day {
				return hq, nil, false, outcome.BadRequest("invalid _since %q: expected an instant such as 2024-01-02T03:04:05Z", v)
			}
			hq.Since = time.UnixMilli(r.Lo).UTC()
			links.Set("_since", v)
		case "_at":
			// The versions current at some time in the period of the
			// value (R4 http.html#history): written before its end and
			// not replaced before its start.
			v = fhirtime.QueryValue(v)
			r, err := fhirtime.Parse(v)
			if err != nil {
				return hq, nil, false, outcome.BadRequest("invalid _at %q: expected a date or dateTime such as 2024, 2024-01-02 or 2024-01-02T03:04:05Z", v)
			}
			hq.AtFrom, hq.At = time.UnixMilli(r.Lo).UTC(), time.UnixMilli(r.Hi+1).UTC()
			links.Set("_at", v)
		case "_count":
			v = strings.TrimSpace(v)
			n, err := strconv.Atoi(v)
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && v[0] != '-' {
				n, err = s.maxHistory, nil
			}
			if err != nil || n < 0 {
				return hq, nil, false, outcome.BadRequest("invalid _count %q: expected a non-negative integer", v)
			}
			if n > s.maxHistory {
				n = s.maxHistory
			}
			links.Set("_count", strconv.Itoa(n))
			if n == 0 {
				onlyTotal = true
				n = 1
			}
			hq.Count = n
		case HistoryCursorParam:
			hq.Before = v
		default:
			if strict {
				return hq, nil, false, outcome.New(http.StatusBadRequest, "not-supported", "history parameter %q is not supported", key)
			}
		}
	}
	return hq, links, onlyTotal, nil
}
