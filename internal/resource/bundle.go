package resource

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/parallel"
	"github.com/lapis-health/lapis/internal/store"
)

// Return is the Prefer: return preference for write responses.
type Return int

// Return preferences (RFC 7240 / R4 http.html#ops).
const (
	ReturnRepresentation Return = iota // the resource (default)
	ReturnMinimal                      // no body
	ReturnOutcome                      // an OperationOutcome
)

// entry is one parsed request entry of a batch or transaction.
type entry struct {
	index    int
	fullURL  string
	method   string
	rawURL   string
	typ, id  string
	version  int64  // vread
	history  bool   // .../_history
	query    string // raw query string (search or conditional criteria)
	hasQuery bool
	resource map[string]any
	patch    []patchOp

	ifNoneExist string
	ifMatch     precondition
	ifNoneMatch string

	// resolved during transaction processing
	targetID string
	existing *store.Resource // conditional create matched this
	result   *Result
}

// Bundle processes a batch or transaction Bundle (POST [base]) and returns
// the batch-response / transaction-response Bundle (R4 http.html#transaction
// and bundle.html#transaction).
//
// A transaction is one store transaction: all entries succeed or none is
// written, and the first failing entry's status and OperationOutcome are
// returned (the issues name the entry). Entries are processed in the order
// DELETE, POST, PUT/PATCH, GET/HEAD; ids of creates and conditional updates
// are resolved first, then every reference to an entry's fullUrl
// (urn:uuid:, urn:oid: or absolute) is rewritten to the resolved Type/id,
// and conditional references (Type?criteria) are resolved to their single
// match (412 when none or several match). Two entries touching the same
// resource, or sharing a fullUrl, make the transaction fail with 400.
//
// Batch entries are independent (each in its own store transaction, in
// request order); failures are reported per entry.
//
// A Bundle with more than Config.MaxBundleEntries entries is refused with
// 413 before any entry runs, and the response is held to
// Config.MaxResponseBytes (see there).
func (s *Service) Bundle(ctx context.Context, body []byte, ret Return) (*Result, error) {
	doc, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	if rt, _ := doc["resourceType"].(string); rt != "Bundle" {
		return nil, outcome.BadRequest("POST to the base URL expects a Bundle of type batch or transaction").At("resourceType")
	}
	btype, _ := doc["type"].(string)
	if o := interaction.OutcomeFromContext(ctx); o != nil && (btype == "batch" || btype == "transaction") {
		o.BundleType = btype
	}
	var op Interaction
	switch btype {
	case "transaction":
		op = InteractionTransaction
	case "batch":
		op = InteractionBatch
	default:
		return nil, outcome.BadRequest("Bundle.type must be batch or transaction, not %q", btype).At("Bundle.type")
	}
	if err := s.access.Check(ctx, op, ""); err != nil {
		return nil, err
	}
	rawEntries, ok := doc["entry"].([]any)
	if _, present := doc["entry"]; present && !ok {
		return nil, outcome.BadRequest("Bundle.entry must be an array").At("Bundle.entry")
	}
	if s.maxEntries > 0 && len(rawEntries) > s.maxEntries {
		return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the Bundle has %d entries; the maximum is %d: split it into smaller Bundles", len(rawEntries), s.maxEntries)
	}
	entries := make([]*entry, len(rawEntries))
	var parseErrs []*outcome.Error
	for i, raw := range rawEntries {
		e, err := s.parseEntry(i, raw)
		if err != nil {
			oe := entryError(i, err)
			if op == InteractionTransaction {
				return nil, oe
			}
			parseErrs = append(parseErrs, oe)
			entries[i] = &entry{index: i, result: &Result{Status: oe.Status, Issues: oe.Issues}}
			continue
		}
		entries[i] = e
	}
	if op == InteractionTransaction {
		return s.transaction(ctx, entries, ret)
	}
	return s.batch(ctx, entries, ret)
}

// entryError prefixes the issues of err with the entry's location.
func entryError(i int, err error) *outcome.Error {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return InternalError()
	}
	prefix := fmt.Sprintf("Bundle.entry[%d]", i)
	c := &outcome.Error{Status: oe.Status, Issues: make([]outcome.Issue, len(oe.Issues))}
	for j, is := range oe.Issues {
		is.Diagnostics = prefix + ": " + is.Diagnostics
		var exprs []string
		for _, e := range is.Expression {
			if k := strings.IndexByte(e, '.'); k > 0 && e[0] >= 'A' && e[0] <= 'Z' && e[:k] != "Bundle" {
				exprs = append(exprs, prefix+".resource"+e[k:])
			} else if e == "resourceType" || e == "id" {
				exprs = append(exprs, prefix+".resource."+e)
			} else {
				exprs = append(exprs, prefix+"."+e)
			}
		}
		if len(exprs) == 0 {
			exprs = []string{prefix}
		}
		is.Expression = exprs
		c.Issues[j] = is
	}
	return c
}

// parseEntry decodes one Bundle.entry.
func (s *Service) parseEntry(i int, raw any) (*entry, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, outcome.BadRequest("the entry must be an object")
	}
	e := &entry{index: i}
	if fu, present := m["fullUrl"]; present {
		s, ok := fu.(string)
		if !ok || s == "" {
			return nil, outcome.BadRequest("fullUrl must be a non-empty string").At("fullUrl")
		}
		e.fullURL = s
	}
	req, ok := m["request"].(map[string]any)
	if !ok {
		return nil, outcome.BadRequest("the entry has no request").At("request")
	}
	e.method, _ = req["method"].(string)
	e.rawURL, _ = req["url"].(string)
	switch e.method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
	default:
		return nil, outcome.BadRequest("request.method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE", e.method).At("request.method")
	}
	if e.rawURL == "" {
		return nil, outcome.BadRequest("the entry has no request.url").At("request.url")
	}
	e.ifNoneExist, _ = req["ifNoneExist"].(string)
	e.ifNoneMatch, _ = req["ifNoneMatch"].(string)
	if im, _ := req["ifMatch"].(string); im != "" {
		v, err := parseIfMatch(im)
		if err != nil {
			return nil, err
		}
		e.ifMatch = v
	}
	if err := s.parseEntryURL(e); err != nil {
		return nil, err
	}
	res, hasRes := m["resource"].(map[string]any)
	if _, present := m["resource"]; present && !hasRes {
		return nil, outcome.BadRequest("resource must be a JSON object").At("resource")
	}
	switch e.method {
	case "POST", "PUT":
		if !hasRes {
			return nil, outcome.BadRequest("a %s entry needs a resource", e.method).At("resource")
		}
		if err := s.checkBodyType(res, e.typ); err != nil {
			return nil, err
		}
		if e.method == "PUT" && !e.hasQuery {
			if err := checkBodyID(res, e.id); err != nil {
				return nil, err
			}
		}
		e.resource = res
	case "PATCH":
		if !hasRes {
			return nil, outcome.BadRequest("a PATCH entry needs a Binary resource holding a JSON Patch").At("resource")
		}
		ops, err := patchFromBinary(res)
		if err != nil {
			return nil, err
		}
		e.patch = ops
	}
	return e, nil
}

// patchFromBinary extracts a JSON Patch from a Binary resource
// (contentType application/json-patch+json, base64 data), the R4 way of
// carrying a patch in a Bundle.
func patchFromBinary(res map[string]any) ([]patchOp, error) {
	if rt, _ := res["resourceType"].(string); rt != "Binary" {
		return nil, outcome.New(http.StatusBadRequest, "not-supported", "a PATCH entry must carry a Binary resource with contentType application/json-patch+json").At("resource")
	}
	ct, _ := res["contentType"].(string)
	if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(mt) != "application/json-patch+json" {
		return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "unsupported patch format %q; only application/json-patch+json is supported", ct).At("resource.contentType")
	}
	data, _ := res["data"].(string)
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, outcome.BadRequest("Binary.data is not valid base64").At("resource.data")
	}
	return parsePatch(raw)
}

// parseEntryURL splits request.url into type, id, version, history and query.
func (s *Service) parseEntryURL(e *entry) error {
	u := e.rawURL
	pathPart, _, _ := strings.Cut(u, "?")
	if strings.HasPrefix(u, s.base+"/") || u == s.base {
		u = strings.TrimPrefix(u[len(s.base):], "/")
	} else if strings.Contains(pathPart, "://") {
		return outcome.BadRequest("request.url %q is not relative to this server's base", e.rawURL).At("request.url")
	}
	u = strings.TrimPrefix(u, "/")
	path, query, hasQuery := strings.Cut(u, "?")
	e.query, e.hasQuery = query, hasQuery
	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	bad := func() error {
		return outcome.BadRequest("request.url %q is not a supported %s URL", e.rawURL, e.method).At("request.url")
	}
	for _, seg := range segs {
		if seg == "" {
			return bad()
		}
	}
	if len(segs) == 1 && segs[0] == "_history" {
		if e.method != "GET" && e.method != "HEAD" {
			return bad()
		}
		e.history = true
		return nil
	}
	if len(segs) == 0 {
		if (e.method == "GET" || e.method == "HEAD") && hasQuery {
			return nil // system search
		}
		return bad()
	}
	e.typ = segs[0]
	if !s.reg.IsResourceType(e.typ) {
		return outcome.NotFound("unknown resource type %q in request.url", e.typ).At("request.url")
	}
	get := e.method == "GET" || e.method == "HEAD"
	switch len(segs) {
	case 1:
		if (e.method == "PUT" || e.method == "DELETE" || e.method == "PATCH") && (!hasQuery || query == "") {
			return outcome.BadRequest("a %s to %q needs an id or search criteria", e.method, e.rawURL).At("request.url")
		}
		if e.method == "POST" && hasQuery {
			return bad()
		}
		return nil
	case 2:
		if segs[1] == "_history" {
			if !get {
				return bad()
			}
			e.history = true
			return nil
		}
		if e.method == "POST" {
			return bad()
		}
		e.id = segs[1]
	case 3:
		if !get || segs[2] != "_history" {
			return bad()
		}
		e.id, e.history = segs[1], true
	case 4:
		if !get || segs[2] != "_history" {
			return bad()
		}
		e.id = segs[1]
		v, ok := ParseVersion(segs[3])
		if !ok {
			if !ValidID(segs[3]) {
				return outcome.BadRequest("invalid version id %q in request.url", segs[3]).At("request.url")
			}
			return outcome.NotFound("%s/%s has no version %q", e.typ, segs[1], segs[3]).At("request.url")
		}
		e.version = v
	default:
		return bad()
	}
	if err := checkID(e.id); err != nil {
		return err
	}
	if hasQuery && !get {
		return bad()
	}
	return nil
}

// interaction returns the Access interaction of an entry.
func (e *entry) interaction() Interaction {
	switch e.method {
	case "POST":
		return InteractionCreate
	case "PUT":
		return InteractionUpdate
	case "PATCH":
		return InteractionPatch
	case "DELETE":
		return InteractionDelete
	}
	switch {
	case e.history && e.id != "":
		return InteractionHistoryInstance
	case e.history && e.typ != "":
		return InteractionHistoryType
	case e.history:
		return InteractionHistorySystem
	case e.version > 0:
		return InteractionVRead
	case e.id != "":
		return InteractionRead
	case e.typ != "":
		return InteractionSearchType
	default:
		return InteractionSearchSystem
	}
}

// ---------------------------------------------------------------------------
// Transaction

func (s *Service) transaction(ctx context.Context, entries []*entry, ret Return) (*Result, error) {
	versioned := false
	seenFull := map[string]int{}
	for _, e := range entries {
		if err := s.access.Check(ctx, e.interaction(), e.typ); err != nil {
			return nil, entryError(e.index, err)
		}
		if e.hasQuery && e.method != "GET" && e.method != "HEAD" || e.ifNoneExist != "" {
			if err := s.access.Check(ctx, InteractionSearchType, e.typ); err != nil {
				return nil, entryError(e.index, err)
			}
		}
		if e.ifMatch.pinned() {
			versioned = true
		}
		if e.history {
			// History runs after the commit; refuse bad parameters before
			// anything is written.
			params, err := ParseQuery(e.query)
			if err == nil {
				_, _, _, err = s.historyParams(params, false)
			}
			if err != nil {
				return nil, entryError(e.index, err)
			}
		}
		if e.fullURL != "" {
			if j, dup := seenFull[e.fullURL]; dup {
				return nil, entryError(e.index, outcome.New(http.StatusBadRequest, "duplicate", "fullUrl %q is also used by entry %d", e.fullURL, j).At("fullUrl"))
			}
			seenFull[e.fullURL] = e.index
		}
	}
	var failed error
	var left int64 // response bytes left after the committed entries
	err := s.update(ctx, !versioned, func(tx store.Tx) error {
		failed = nil
		var err error
		left, err = s.runTransaction(ctx, tx, entries, ret)
		var oe *outcome.Error
		if errors.As(err, &oe) {
			failed = err
		}
		return err
	})
	if failed != nil {
		return nil, failed
	}
	if err != nil {
		if versioned && errors.Is(err, store.ErrConflict) {
			return nil, preconditionFailed("a resource was modified concurrently; the transaction was not applied")
		}
		return nil, s.internal(ctx, "transaction", err)
	}
	b := s.newBundle("transaction-response")
	b.Entry = make([]*bundleEntry, 0, len(entries))
	out := &Result{Status: http.StatusOK}
	for _, e := range entries {
		if (e.method == "GET" || e.method == "HEAD") && (e.history || e.version > 0) {
			// After the commit: what does not fit becomes an entry error.
			r, err := s.get(ctx, s.st, e, left)
			e.result = s.entryResult(ctx, e, r, err, "transaction", "transaction read")
			be, _ := s.fitEntry(e, ret, left, "transaction")
			left -= be.size()
			out.tally(be, e.result)
			b.Entry = append(b.Entry, be)
			continue
		}
		be := s.responseEntry(e, ret)
		out.tally(be, e.result)
		b.Entry = append(b.Entry, be)
	}
	out.Body = b.bytes()
	return out, nil
}

// responseTooLarge is the 413 outcome of the entry that takes a batch or
// transaction response (typ) past MaxResponseBytes; rolledBack says that
// the transaction was not applied.
func (s *Service) responseTooLarge(typ string, rolledBack bool) *outcome.Error {
	msg := "the %s response would be larger than the response size limit of %d bytes with this entry's result; split the Bundle, lower _count or drop _include/_revinclude in its searches, or send Prefer: return=minimal"
	if rolledBack {
		msg += "; nothing was written"
	}
	return outcome.New(http.StatusRequestEntityTooLarge, "too-costly", msg, typ, s.maxResp)
}

// fitEntry renders the response entry of a processed entry within left
// bytes of the response (typ: batch or transaction). A write whose
// resource does not fit is reported without it, with a warning (the
// write stands); a read whose resource does not fit becomes a 413 entry.
// fitted is false when a resource was left out.
func (s *Service) fitEntry(e *entry, ret Return, left int64, typ string) (be *bundleEntry, fitted bool) {
	be = s.responseEntry(e, ret)
	if len(be.Resource) == 0 || be.size() <= left {
		return be, true
	}
	switch e.method {
	case "POST", "PUT", "PATCH", "DELETE":
		be.Resource = nil
		be.Response.Outcome = marshalJSON(outcome.Resource([]outcome.Issue{{Severity: "warning", Code: "too-costly",
			Diagnostics: fmt.Sprintf("the resource is left out: the %s response reached the response size limit of %d bytes; the %s succeeded (read the resource back, or send Prefer: return=minimal)", typ, s.maxResp, e.method)}}))
		return be, false
	}
	e.result = entryErrorResult(e.index, s.responseTooLarge(typ, false))
	return s.responseEntry(e, ret), false
}

// entryResult is the result of entry e that run gave as r and err: r,
// or the entry's error (a result too large for the room left in the
// response of kind, transaction or batch, a 413; what names the step
// in the log of an unexpected error).
func (s *Service) entryResult(ctx context.Context, e *entry, r *Result, err error, kind, what string) *Result {
	if errors.Is(err, errTooLarge) {
		err = s.responseTooLarge(kind, false)
	}
	if err != nil {
		return entryErrorResult(e.index, s.internal(ctx, what, err))
	}
	return r
}

// entryErrorResult is the result of entry i that failed with err.
func entryErrorResult(i int, err error) *Result {
	oe := entryError(i, err)
	return &Result{Status: oe.Status, Issues: oe.Issues}
}

// runTransaction processes the entries inside tx. It returns an entry-
// located *outcome.Error for client errors, among them a response that
// would exceed MaxResponseBytes (rendered with ret), and the response
// bytes left for the entries that run after the commit.
func (s *Service) runTransaction(ctx context.Context, tx store.Tx, entries []*entry, ret Return) (int64, error) {
	now := s.timestamp()
	// Per-attempt state (the store may retry the whole function).
	work := make([]*entry, len(entries))
	for i, e := range entries {
		c := *e
		if e.resource != nil {
			c.resource = deepCopy(e.resource).(map[string]any)
		}
		c.targetID, c.existing, c.result = "", nil, nil
		work[i] = &c
	}
	defer func() {
		for i := range entries {
			entries[i].result = work[i].result
			entries[i].targetID = work[i].targetID
		}
	}()
	byMethod := func(methods ...string) []*entry {
		var out []*entry
		for _, e := range work {
			for _, m := range methods {
				if e.method == m {
					out = append(out, e)
				}
			}
		}
		return out
	}
	// The conditional-write lock before any row lock (the DELETEs'), when
	// an entry may create what its criteria search for.
	for _, e := range work {
		if e.method == "POST" && e.ifNoneExist != "" || e.method == "PUT" && e.hasQuery {
			if err := lockConditional(ctx, tx); err != nil {
				return 0, err
			}
			break
		}
	}
	touched := map[string]int{}
	touch := func(e *entry, typ, id string) error {
		key := typ + "/" + id
		if j, dup := touched[key]; dup {
			return entryError(e.index, outcome.New(http.StatusBadRequest, "duplicate", "%s is also the target of entry %d; a transaction may touch each resource only once", key, j))
		}
		touched[key] = e.index
		return nil
	}
	rw := &refRewriter{reg: s.reg, mapping: map[string]string{}}

	// 1. DELETE
	for _, e := range byMethod("DELETE") {
		var r *Result
		var err error
		if e.hasQuery {
			matches, merr := s.conditionalMatches(ctx, tx, e.typ, e.query)
			if merr != nil {
				return 0, entryError(e.index, merr)
			}
			switch len(matches) {
			case 0:
				r = &Result{Status: http.StatusNoContent}
			case 1:
				if err := touch(e, e.typ, matches[0].ID); err != nil {
					return 0, err
				}
				r, err = s.deleteTx(ctx, tx, e.typ, matches[0].ID, e.ifMatch, now)
			default:
				err = preconditionFailed("the criteria match more than one %s resource; multiple deletes are not supported", e.typ)
			}
		} else {
			if err := touch(e, e.typ, e.id); err != nil {
				return 0, err
			}
			r, err = s.deleteTx(ctx, tx, e.typ, e.id, e.ifMatch, now)
		}
		if err != nil {
			return 0, s.txEntryError(e, err)
		}
		e.result = r
	}

	// 2. Resolve the ids of creates (conditional creates may match) and of
	// updates, so that references can be rewritten before anything is
	// written.
	for _, e := range byMethod("POST") {
		if e.ifNoneExist != "" {
			matches, err := s.conditionalMatches(ctx, tx, e.typ, rw.rewriteQuery(e.ifNoneExist))
			if err != nil {
				return 0, entryError(e.index, err)
			}
			switch len(matches) {
			case 0:
			case 1:
				m := matches[0]
				e.existing = &m
				e.targetID = m.ID
			default:
				return 0, entryError(e.index, preconditionFailed("the ifNoneExist criteria match more than one %s resource", e.typ))
			}
		}
		if e.targetID == "" {
			e.targetID = NewID()
		}
		if err := touch(e, e.typ, e.targetID); err != nil {
			return 0, err
		}
		if e.fullURL != "" {
			rw.mapping[e.fullURL] = e.typ + "/" + e.targetID
		}
	}
	for _, e := range byMethod("PUT", "PATCH") {
		switch {
		case !e.hasQuery:
			e.targetID = e.id
		case e.method == "PUT":
			id, err := s.resolveConditionalUpdate(ctx, tx, e.typ, rw.rewriteQuery(e.query), e.resource)
			if err != nil {
				return 0, entryError(e.index, err)
			}
			e.targetID = id
		default:
			id, err := s.resolveSingle(ctx, tx, e.typ, rw.rewriteQuery(e.query))
			if err != nil {
				return 0, entryError(e.index, err)
			}
			e.targetID = id
		}
		if err := touch(e, e.typ, e.targetID); err != nil {
			return 0, err
		}
		if e.fullURL != "" && e.method == "PUT" {
			rw.mapping[e.fullURL] = e.typ + "/" + e.targetID
		}
	}

	// 3. Rewrite references in every resource.
	for _, e := range work {
		if e.resource == nil {
			continue
		}
		rw.cond = func(ref string) (string, error) {
			typ, q, _ := strings.Cut(ref, "?")
			if !s.reg.IsResourceType(typ) {
				return "", outcome.BadRequest("conditional reference %q names an unknown resource type", ref)
			}
			matches, err := s.conditionalMatches(ctx, tx, typ, q)
			if err != nil {
				return "", err
			}
			if len(matches) != 1 {
				return "", preconditionFailed("conditional reference %q matches %d resources; exactly one is required", ref, len(matches))
			}
			return typ + "/" + matches[0].ID, nil
		}
		if err := rw.rewriteResource(e.resource); err != nil {
			return 0, entryError(e.index, err)
		}
	}

	// 4. POST. New resources are prepared (validated, indexed, rendered)
	// in parallel, then stored in entry order.
	var creates []*entry
	for _, e := range byMethod("POST") {
		if e.existing != nil {
			e.result = &Result{Status: http.StatusOK, Resource: e.existing, Body: e.existing.Body}
			continue
		}
		creates = append(creates, e)
	}
	writes := make([]*store.Write, len(creates))
	errs := make([]error, len(creates))
	parallel.For(len(creates), func(i int) {
		e := creates[i]
		writes[i], errs[i] = s.prepareVersion(ctx, e.typ, e.targetID, nil, e.resource, http.MethodPost, now)
	})
	for i, e := range creates {
		if errs[i] != nil {
			return 0, s.txEntryError(e, errs[i])
		}
	}
	if err := s.putCreates(ctx, tx, creates, writes); err != nil {
		return 0, err
	}
	// 5. PUT and PATCH
	for _, e := range byMethod("PUT", "PATCH") {
		var r *Result
		var err error
		if e.method == "PUT" {
			r, err = s.updateTx(ctx, tx, e.typ, e.targetID, e.resource, e.ifMatch, http.MethodPut, now)
		} else {
			r, err = s.patchTx(ctx, tx, e.typ, e.targetID, e.patch, e.ifMatch, now)
		}
		if err != nil {
			return 0, s.txEntryError(e, err)
		}
		e.result = r
	}
	// The response so far must fit: what the writes return (in entry
	// order), then each GET.
	left := s.maxResp - s.newBundle("transaction-response").size()
	for _, e := range work {
		if e.result == nil {
			continue
		}
		if left -= s.responseEntry(e, ret).size() + 1; left < 0 {
			return 0, entryError(e.index, s.responseTooLarge("transaction", true))
		}
	}
	// 6. GET / HEAD (history and vread run after the commit: the store
	// transaction has no history or version access).
	for _, e := range byMethod("GET", "HEAD") {
		if e.history || e.version > 0 {
			continue
		}
		if e.hasQuery {
			e.query = rw.rewriteQuery(e.query)
		}
		r, err := s.get(ctx, tx, e, left)
		if errors.Is(err, errTooLarge) {
			return 0, entryError(e.index, s.responseTooLarge("transaction", true))
		}
		if err != nil {
			return 0, s.txEntryError(e, err)
		}
		e.result = r
		if left -= s.responseEntry(e, ret).size() + 1; left < 0 {
			return 0, entryError(e.index, s.responseTooLarge("transaction", true))
		}
	}
	return left, nil
}

// putCreates stores the prepared new resources of a transaction's creates
// (writes[i] for creates[i]) and sets their results. A store that can
// (store.Creator) takes them all at once: a few statements or one round
// trip for the Bundle instead of a few per resource. Each must then still
// be visible to the caller, as after putVersion.
func (s *Service) putCreates(ctx context.Context, tx store.Tx, creates []*entry, writes []*store.Write) error {
	c, ok := tx.(store.Creator)
	if !ok || len(writes) < 2 {
		for i, e := range creates {
			r, err := s.putVersion(ctx, tx, writes[i])
			if err != nil {
				return s.txEntryError(e, err)
			}
			e.result = &Result{Status: http.StatusCreated, Resource: r, Body: r.Body}
		}
		return nil
	}
	// A store error is not located at an entry (txEntryError passes it
	// through), so the batch fails as the first failing Put would.
	if err := c.PutNew(ctx, writes); err != nil {
		return err
	}
	for i, e := range creates {
		w := writes[i]
		if err := s.checkWrittenVisible(ctx, tx, w.Type, w.ID); err != nil {
			return s.txEntryError(e, err)
		}
		r := &store.Resource{Type: w.Type, ID: w.ID, VersionID: w.Version, LastUpdated: w.LastUpdated, Body: w.Body, Method: w.Method}
		e.result = &Result{Status: http.StatusCreated, Resource: r, Body: r.Body}
	}
	return nil
}

// txEntryError turns an entry failure into the transaction's error: client
// errors are located at the entry; store errors pass through.
func (s *Service) txEntryError(e *entry, err error) error {
	var oe *outcome.Error
	if errors.As(err, &oe) {
		return entryError(e.index, oe)
	}
	if errors.Is(err, errHidden) {
		return entryError(e.index, notFound(e.typ, e.id))
	}
	return err
}

// get performs a read-type entry (read, vread, search, history) against r.
// A search or history Bundle larger than limit bytes is errTooLarge.
func (s *Service) get(ctx context.Context, r reader, e *entry, limit int64) (*Result, error) {
	params, err := ParseQuery(e.query)
	if err != nil {
		return nil, outcome.BadRequest("the query string of request.url cannot be decoded: %s", err.Error())
	}
	switch {
	case e.history:
		p, err := s.history(ctx, e.typ, e.id, params, false, limit)
		if err != nil {
			return nil, err
		}
		return p.result(), nil
	case e.version > 0:
		return s.VRead(ctx, e.typ, e.id, e.version)
	case e.id != "":
		res, err := s.readVisible(ctx, r, e.typ, e.id)
		if err != nil {
			return nil, err
		}
		if e.ifNoneMatch != "" {
			if v, err := ParseETag(e.ifNoneMatch); err == nil && v == res.VersionID || strings.TrimSpace(e.ifNoneMatch) == "*" {
				return &Result{Status: http.StatusNotModified, Resource: res}, nil
			}
		}
		return &Result{Status: http.StatusOK, Resource: res, Body: res.Body}, nil
	default:
		p, err := s.search(ctx, r, e.typ, params, false, limit)
		if err != nil {
			return nil, err
		}
		return &Result{Status: http.StatusOK, Body: p.JSON(), Returned: p.Returned()}, nil
	}
}

// responseEntry renders the response entry of a processed request entry.
func (s *Service) responseEntry(e *entry, ret Return) *bundleEntry {
	be := &bundleEntry{}
	r := e.result
	if r == nil {
		r = &Result{Status: http.StatusInternalServerError}
	}
	resp := &entryResponse{Status: statusLine(r.Status)}
	be.Response = resp
	if r.Status >= 400 {
		issues := r.Issues
		if len(issues) == 0 {
			issues = InternalError().Issues
		}
		resp.Outcome = marshalJSON(outcome.Resource(issues))
		return be
	}
	if res := r.Resource; res != nil {
		resp.Etag = ETag(res.VersionID)
		resp.LastModified = instant(res)
		if !res.Deleted {
			be.FullURL = s.fullURL(res.Type, res.ID)
		}
		if e.method == "POST" || e.method == "PUT" || e.method == "PATCH" {
			resp.Location = versionLocation(res)
		}
	}
	write := e.method == "POST" || e.method == "PUT" || e.method == "PATCH" || e.method == "DELETE"
	switch {
	case !write:
		if e.method != "HEAD" && r.Status != http.StatusNotModified {
			be.Resource = r.Body
		}
	case ret == ReturnOutcome:
		issues := r.Issues
		if len(issues) == 0 {
			issues = []outcome.Issue{{Severity: "information", Code: "informational", Diagnostics: "the interaction succeeded"}}
		}
		resp.Outcome = marshalJSON(outcome.Resource(issues))
	case ret == ReturnRepresentation && e.method != "DELETE":
		be.Resource = r.Body
	}
	return be
}

// ---------------------------------------------------------------------------
// Batch

// batch runs the entries one by one, rendering each response entry as it
// goes within MaxResponseBytes: once a GET entry's result does not fit,
// the later GET entries are not run (413 entries); writes still run, and
// a representation that does not fit is left out (fitEntry).
func (s *Service) batch(ctx context.Context, entries []*entry, ret Return) (*Result, error) {
	b := s.newBundle("batch-response")
	b.Entry = make([]*bundleEntry, 0, len(entries))
	// Room is kept for the status and outcome of every entry still to
	// come, so that those stay within the limit too.
	left := s.maxResp - b.size() - int64(len(entries))*entryReserve
	full := -1 // the entry at which the response reached its limit
	out := &Result{Status: http.StatusOK}
	for _, e := range entries {
		left += entryReserve
		get := e.method == "GET" || e.method == "HEAD"
		switch {
		case e.result != nil: // failed to parse
		case get && full >= 0:
			e.result = entryErrorResult(e.index, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "not run: the batch response reached the response size limit of %d bytes at entry %d; send the remaining entries in another Bundle", s.maxResp, full))
		default:
			r, err := s.batchEntry(ctx, e, left)
			if errors.Is(err, errTooLarge) {
				full = e.index
			}
			e.result = s.entryResult(ctx, e, r, err, "batch", "batch entry")
		}
		be, fitted := s.fitEntry(e, ret, left, "batch")
		if !fitted && get && full < 0 {
			full = e.index
		}
		left -= be.size() + 1
		out.tally(be, e.result)
		e.result = nil // the response entry holds what is sent
		b.Entry = append(b.Entry, be)
	}
	out.Body = b.bytes()
	return out, nil
}

// entryReserve is the room a batch keeps for each response entry beyond
// its resource: a status line, ETag, location, or a short OperationOutcome
// (entries that echo long parts of the request in their outcome may take
// more).
const entryReserve = 512

// batchEntry runs one batch entry; a GET whose Bundle would be larger
// than limit bytes is errTooLarge.
func (s *Service) batchEntry(ctx context.Context, e *entry, limit int64) (*Result, error) {
	switch e.method {
	case "POST":
		return s.createParsed(ctx, e.typ, e.resource, e.ifNoneExist)
	case "PUT":
		if e.hasQuery {
			return s.updateParsed(ctx, e.typ, "", e.query, e.resource, e.ifMatch)
		}
		return s.updateParsed(ctx, e.typ, e.id, "", e.resource, e.ifMatch)
	case "PATCH":
		return s.patchParsed(ctx, e.typ, e.id, e.query, e.patch, e.ifMatch)
	case "DELETE":
		if e.hasQuery {
			return s.ConditionalDelete(ctx, e.typ, e.query)
		}
		return s.Delete(ctx, e.typ, e.id, e.ifMatch.String())
	}
	if err := s.access.Check(ctx, e.interaction(), e.typ); err != nil {
		return nil, err
	}
	return s.get(ctx, s.st, e, limit)
}

// createParsed is Create for an already decoded resource.
func (s *Service) createParsed(ctx context.Context, typ string, res map[string]any, ifNoneExist string) (*Result, error) {
	if err := s.checkAccess(ctx, InteractionCreate, typ, ifNoneExist != ""); err != nil {
		return nil, err
	}
	return s.createOne(ctx, typ, res, ifNoneExist)
}

// updateParsed is Update / ConditionalUpdate for a decoded resource.
func (s *Service) updateParsed(ctx context.Context, typ, id, criteria string, res map[string]any, ifMatch precondition) (*Result, error) {
	if err := s.checkAccess(ctx, InteractionUpdate, typ, criteria != ""); err != nil {
		return nil, err
	}
	var out *Result
	err := s.update(ctx, !ifMatch.pinned(), func(tx store.Tx) error {
		var r *Result
		var err error
		if criteria != "" {
			r, err = s.conditionalUpdateTx(ctx, tx, typ, criteria, deepCopy(res).(map[string]any), ifMatch, s.timestamp())
		} else {
			r, err = s.updateTx(ctx, tx, typ, id, deepCopy(res).(map[string]any), ifMatch, http.MethodPut, s.timestamp())
		}
		out = r
		return err
	})
	if err != nil && ifMatch.pinned() && errors.Is(err, store.ErrConflict) {
		return nil, ifMatch.stale("the resource")
	}
	return out, err
}

// patchParsed is Patch / ConditionalPatch for decoded operations.
func (s *Service) patchParsed(ctx context.Context, typ, id, criteria string, ops []patchOp, ifMatch precondition) (*Result, error) {
	if err := s.access.Check(ctx, InteractionPatch, typ); err != nil {
		return nil, err
	}
	var out *Result
	err := s.update(ctx, !ifMatch.pinned(), func(tx store.Tx) error {
		target := id
		if criteria != "" {
			t, err := s.resolveSingle(ctx, tx, typ, criteria)
			if err != nil {
				return err
			}
			target = t
		}
		r, err := s.patchTx(ctx, tx, typ, target, ops, ifMatch, s.timestamp())
		out = r
		return err
	})
	if err != nil && ifMatch.pinned() && errors.Is(err, store.ErrConflict) {
		return nil, ifMatch.stale("the resource")
	}
	return out, err
}
