package resource

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
)

// SnapshotParam is the query parameter of paging links that names the
// stored result snapshot (store.SearchResult.Snapshot) being paged through.
const SnapshotParam = "_snapshot"

// ParseQuery decodes a query string. Unlike url.ParseQuery it treats ';'
// as an ordinary character (FHIR uses only '&' as a separator, and ';'
// appears in values such as _format=application/fhir+json;fhirVersion=4.0).
func ParseQuery(raw string) (url.Values, error) {
	v, err := url.ParseQuery(strings.ReplaceAll(raw, ";", "%3B"))
	if err != nil {
		var ee url.EscapeError
		if errors.As(err, &ee) {
			return nil, outcome.BadRequest("the query string is malformed: invalid percent-encoding %q", string(ee))
		}
		return nil, outcome.BadRequest("the query string is malformed")
	}
	return v, nil
}

// Search runs a search (R4 search.html) of typ ("" for a system-level
// search, where _type may list types) and returns one page of its result
// as data (SearchPage; JSON renders it as the searchset Bundle):
//
//   - links self (the recognised parameters), first, previous and next
//     (paging through the stored snapshot of the ordered result with
//     _snapshot and _offset; an expired snapshot re-runs the search);
//   - the total unless _total=none;
//   - the matches and included resources as stored, subsetted by
//     _summary/_elements;
//   - a warning issue per ignored parameter or adjusted value.
//
// strict is Prefer: handling=strict (unknown parameters are a 400). A page
// whose Bundle would exceed MaxResponseBytes is a 413.
func (s *Service) Search(ctx context.Context, typ string, params url.Values, strict bool) (*SearchPage, error) {
	op := InteractionSearchSystem
	if typ != "" {
		if err := s.checkType(typ); err != nil {
			return nil, err
		}
		op = InteractionSearchType
	}
	if err := s.access.Check(ctx, op, typ); err != nil {
		return nil, err
	}
	p, err := s.search(ctx, s.st, typ, params, strict, s.maxResp)
	if errors.Is(err, errTooLarge) {
		return nil, s.pageTooLarge("search result page", "lower _count, select less with _elements or _summary, or drop _include/_revinclude")
	}
	if err != nil {
		return nil, s.internal(ctx, "search", err)
	}
	return p, nil
}

// Each runs a search of typ as Search does (under the same access checks
// and filter, with Prefer: handling=strict: an unknown parameter is a 400,
// not a silently wider result) and calls fn with every match, in order,
// across all pages: one page of _count matches is held at a time (paging
// through the result's stored snapshot), so memory does not grow with the
// result. Included resources (_include/_revinclude) and the total are not
// computed. fn's resource, whose Body is the stored JSON (or its
// _summary/_elements subset), is valid only during the call. Each stops
// at the first error of fn, which it returns as is; a result snapshot that
// expires before the last page is a 409.
func (s *Service) Each(ctx context.Context, typ string, params url.Values, fn func(*store.Resource) error) error {
	return s.each(ctx, typ, params, nil, fn)
}

// EachOfPatient is Each with its matches restricted to Patient/id's
// record: the members of the Patient's compartment (as SearchCompartment
// restricts them) or, for a patient-linked type outside it
// (Registry.PatientRecord: Device, Binary), the resources that name the
// Patient through its linking parameter. typ must be one of those types (400
// otherwise). Bulk Data exports of a Group or a list of patients run on
// it.
func (s *Service) EachOfPatient(ctx context.Context, id, typ string, params url.Values, fn func(*store.Resource) error) error {
	if err := checkID(id); err != nil {
		return err
	}
	if len(s.recordParams[typ]) == 0 {
		return outcome.BadRequest("%s is neither in the Patient compartment (%s) nor linked to a patient", typ, PatientCompartmentURL)
	}
	return s.each(ctx, typ, params, s.patientRecord(id), fn)
}

// each is Each restricted to comp (nil: no compartment).
func (s *Service) each(ctx context.Context, typ string, params url.Values, comp *store.Compartment, fn func(*store.Resource) error) error {
	op := InteractionSearchSystem
	if typ != "" {
		if err := s.checkType(typ); err != nil {
			return err
		}
		op = InteractionSearchType
	}
	if err := s.access.Check(ctx, op, typ); err != nil {
		return err
	}
	params = cloneValues(params)
	delete(params, SnapshotParam)
	req, err := s.parser.Parse(typ, params, true)
	if err != nil {
		return err
	}
	q := req.Query
	q.Filter = s.access.Filter(ctx)
	if mf, ok := s.access.(MatchFilterer); ok {
		q.MatchFilter = mf.MatchFilter(ctx)
	}
	q.Total = store.TotalNone
	q.Include, q.RevInclude = nil, nil
	q.Compartment = comp
	if req.Summary == "count" || q.Count <= 0 {
		return nil
	}
	if len(q.Sort) == 0 {
		// Keyset paging: constant cost per page however large the result.
		q.Keyset = &store.Keyset{}
	}
	// Keyset pages are read one ahead: the next page's query runs (on
	// another connection) while fn handles this one, so that the database
	// and the caller work at once. At most two pages are held.
	ctx, cancel := context.WithCancel(ctx)
	type page struct {
		res *store.SearchResult
		err error
	}
	var ahead chan page
	defer func() {
		cancel()
		if ahead != nil {
			<-ahead
		}
	}()
	for {
		var res *store.SearchResult
		var err error
		if ahead != nil {
			p := <-ahead
			ahead, res, err = nil, p.res, p.err
		} else {
			res, err = s.st.Search(ctx, &q)
		}
		if errors.Is(err, store.ErrSnapshotExpired) {
			return outcome.New(http.StatusConflict, "conflict", "the stored search result expired before its last page was read; run the search again")
		}
		if err != nil {
			return s.internal(ctx, "search", err)
		}
		if q.Keyset != nil && res.HasMore {
			if res.Next == nil {
				return s.internal(ctx, "search", errors.New("keyset page without a next position"))
			}
			pageBytes := 0
			for i := range res.Matches {
				pageBytes += len(res.Matches[i].Body)
			}
			q.Keyset = res.Next
			// Memory bounded in bytes: pages of large resources shrink.
			if pageBytes > eachPageBytes && q.Count > 10 {
				q.Count = max(10, q.Count*eachPageBytes/pageBytes)
			}
			next, ch := q, make(chan page, 1)
			ahead = ch
			go func() {
				res, err := s.st.Search(ctx, &next)
				ch <- page{res, err}
			}()
		}
		for i := range res.Matches {
			r := &res.Matches[i]
			if r.Body, err = Subset(s.reg, r.Body, req.Summary, req.Elements); err != nil {
				return s.internal(ctx, "search", err)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if !res.HasMore {
			return nil
		}
		if q.Keyset != nil {
			continue
		}
		if res.Snapshot != "" {
			q.Snapshot = res.Snapshot
		}
		q.Offset += q.Count
	}
}

// eachPageBytes is about the most resource bytes a page of Each holds
// when it pages by keyset (later pages get fewer resources when one is
// larger).
const eachPageBytes = 8 << 20

// pageTooLarge is the 413 outcome of a search or history page over
// MaxResponseBytes.
func (s *Service) pageTooLarge(what, remedy string) *outcome.Error {
	return outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the %s is larger than the response size limit of %d bytes; %s", what, s.maxResp, remedy)
}

// search runs a search and returns its page, or errTooLarge when the
// page's Bundle would be larger than limit bytes.
func (s *Service) search(ctx context.Context, r reader, typ string, params url.Values, strict bool, limit int64) (*SearchPage, error) {
	return s.scopedSearch(ctx, r, typ, params, strict, limit, nil)
}

// searchScope narrows a search to a compartment (compartment search,
// $everything) and says where its links point.
type searchScope struct {
	// compartment restricts the matches (store.Query.Compartment).
	compartment *store.Compartment
	// path is the URL of the links ("" = the type's or system's search).
	path string
	// links, when set, adjusts the parameters of the links.
	links func(url.Values)
	// warnings are added to the parser's.
	warnings []string
	// fit cuts a page short where the next match would take the Bundle
	// past the size limit (the next link continues from there) instead
	// of failing with errTooLarge; only a first match that does not fit
	// alone is errTooLarge. A page with included resources that does not
	// fit is run again with half its matches (and their includes), and a
	// single match without them (with a warning).
	fit bool
	// include adds these includes to the search ($everything: every
	// reference of the page's resources).
	include []store.Include
	// keepIncluded, when set, says which types of included resources
	// the page keeps.
	keepIncluded func(typ string) bool
	// linkCount, when set, is the page size the links ask for (the
	// request's, where a page was run again with fewer matches).
	linkCount int
}

// scopedSearch is search narrowed by sc (nil = none).
func (s *Service) scopedSearch(ctx context.Context, r reader, typ string, params url.Values, strict bool, limit int64, sc *searchScope) (*SearchPage, error) {
	params = cloneValues(params)
	snapshot := params.Get(SnapshotParam)
	delete(params, SnapshotParam)
	req, err := s.parser.Parse(typ, params, strict)
	if err != nil {
		return nil, err
	}
	q := req.Query
	q.Filter = s.access.Filter(ctx)
	if mf, ok := s.access.(MatchFilterer); ok {
		q.MatchFilter = mf.MatchFilter(ctx)
	}
	q.Snapshot = snapshot
	ownIncludes := len(q.Include) // the request's, before sc's
	if sc != nil {
		q.Compartment = sc.compartment
		q.Include = append(q.Include, sc.include...)
		req.Warnings = append(req.Warnings, sc.warnings...)
	}
	for {
		res, err := r.Search(ctx, &q)
		if errors.Is(err, store.ErrSnapshotExpired) && q.Snapshot != "" {
			q.Snapshot = ""
			res, err = r.Search(ctx, &q)
		}
		if err != nil {
			return nil, err
		}
		if sc != nil && sc.keepIncluded != nil {
			res.Included = slices.DeleteFunc(res.Included, func(r store.Resource) bool { return !sc.keepIncluded(r.Type) })
		}
		p, err := s.searchPage(typ, req, &q, res, limit, sc)
		if sc == nil || !sc.fit || !errors.Is(err, errTooLarge) || len(res.Included) == 0 {
			return p, err
		}
		switch {
		case len(res.Matches) > 1:
			// The page's matches fit only without their includes: half as
			// many, with theirs (the next link continues after them, and
			// asks for the request's page size).
			if sc.linkCount == 0 {
				sc.linkCount = q.Count
			}
			q.Count = len(res.Matches) / 2
		case len(res.Matches) == 1 && len(q.Include) > ownIncludes:
			// A single match that fits only without sc's includes comes
			// alone, said so, rather than a 413 that would stop the
			// paging there for resources outside the matches.
			q.Include = q.Include[:ownIncludes:ownIncludes]
			req.Warnings = append(req.Warnings, "the resources this page's match references were left out: with them the page would be larger than the response size limit of "+strconv.FormatInt(limit, 10)+" bytes")
		default:
			return p, err
		}
		// Run again on the same ordered matches.
		if res.Snapshot != "" {
			q.Snapshot = res.Snapshot
		}
	}
}

// searchPage builds the page of a search result, or returns errTooLarge as
// soon as its Bundle grows past limit bytes (before subsetting the rest).
// The page takes over res's resources.
func (s *Service) searchPage(typ string, req *search.Request, q *store.Query, res *store.SearchResult, limit int64, sc *searchScope) (*SearchPage, error) {
	p := &SearchPage{Total: -1, Timestamp: s.timestamp(), base: s.base}
	if q.Total != store.TotalNone && res.Total >= 0 {
		p.Total = res.Total
	}
	path := s.base
	if typ != "" {
		path += "/" + typ
	}
	if sc != nil && sc.path != "" {
		path = sc.path
	}
	fit := sc != nil && sc.fit
	snap := res.Snapshot
	if snap == "" {
		snap = q.Snapshot
	}
	pageSize := q.Count
	if sc != nil && sc.linkCount > 0 {
		pageSize = sc.linkCount
	}
	link := func(rel string, offset int) {
		v := cloneValues(req.Canonical)
		if sc != nil && sc.links != nil {
			sc.links(v)
		}
		v.Del("_offset")
		if offset > 0 {
			v.Set("_offset", strconv.Itoa(offset))
		}
		if rel != "self" || q.Snapshot != "" {
			if snap != "" {
				v.Set(SnapshotParam, snap)
			}
		}
		if rel != "self" {
			v.Set("_count", strconv.Itoa(pageSize))
		}
		p.Links = append(p.Links, Link{Relation: rel, URL: withQuery(path, v)})
	}
	links := func(more bool, next int) {
		p.Links = p.Links[:0]
		link("self", q.Offset)
		if q.Count > 0 {
			if q.Offset > 0 || more {
				link("first", 0)
			}
			if q.Offset > 0 {
				link("previous", max(0, q.Offset-pageSize))
			}
			if more {
				link("next", next)
			}
		}
	}
	// With fit, room is kept for a next link from the start: the page may
	// be cut short and need one.
	links(res.HasMore || fit && len(res.Matches) > 1, q.Offset+q.Count)
	if len(req.Warnings) > 0 || len(req.Ignored) > 0 {
		for _, w := range req.Warnings {
			p.Issues = append(p.Issues, outcome.Issue{Severity: "warning", Code: "processing", Diagnostics: w})
		}
		if len(req.Warnings) == 0 {
			for _, k := range req.Ignored {
				p.Issues = append(p.Issues, outcome.Issue{Severity: "warning", Code: "not-supported", Diagnostics: "parameter " + k + " was ignored"})
			}
		}
	}
	size := p.size()
	if size > limit {
		return nil, errTooLarge
	}
	add := func(r *store.Resource, mode string) error {
		body, err := Subset(s.reg, r.Body, req.Summary, req.Elements)
		if err != nil {
			return err
		}
		r.Body = body
		if size += p.entrySize(r, mode) + 1; size > limit {
			return errTooLarge
		}
		return nil
	}
	if req.Summary == "count" {
		return p, nil
	}
	for i := range res.Matches {
		if err := add(&res.Matches[i], "match"); err != nil {
			if fit && i > 0 && errors.Is(err, errTooLarge) && len(res.Included) == 0 {
				links(true, q.Offset+i)
				p.Matches = res.Matches[:i:i]
				return p, nil
			}
			return nil, err
		}
	}
	p.Matches = res.Matches
	if fit {
		links(res.HasMore, q.Offset+q.Count)
	}
	for i := range res.Included {
		if err := add(&res.Included[i], "include"); err != nil {
			return nil, err
		}
	}
	p.Included = res.Included
	return p, nil
}
