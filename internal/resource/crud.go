package resource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// Create stores a new resource of type typ from a JSON body (POST
// [base]/[type]). Any id in the body is ignored and a new one is assigned
// (R4 http.html#create). When ifNoneExist is not empty it is the search
// query of an If-None-Exist header (conditional create): no match creates
// the resource (201), one match returns that resource without writing
// (200), several matches fail with 412.
func (s *Service) Create(ctx context.Context, typ string, body []byte, ifNoneExist string) (*Result, error) {
	if err := s.checkType(typ); err != nil {
		return nil, err
	}
	if err := s.checkAccess(ctx, InteractionCreate, typ, strings.TrimSpace(ifNoneExist) != ""); err != nil {
		return nil, err
	}
	res, err := s.decodeForType(body, typ)
	if err != nil {
		return nil, err
	}
	out, err := s.createOne(ctx, typ, res, ifNoneExist)
	if err != nil {
		return nil, s.internal(ctx, "create", err)
	}
	return out, nil
}

// createOne creates a copy of res (conditionally when ifNoneExist is set)
// in a transaction of its own.
func (s *Service) createOne(ctx context.Context, typ string, res map[string]any, ifNoneExist string) (*Result, error) {
	var out *Result
	err := s.update(ctx, true, func(tx store.Tx) error {
		r, err := s.createTx(ctx, tx, typ, deepCopy(res).(map[string]any), ifNoneExist, "", s.timestamp())
		out = r
		return err
	})
	return out, err
}

// createTx creates res (conditionally when ifNoneExist is set) inside tx.
// id is the id to assign ("" = a new one).
func (s *Service) createTx(ctx context.Context, tx store.Tx, typ string, res map[string]any, ifNoneExist, id string, now time.Time) (*Result, error) {
	if strings.TrimSpace(ifNoneExist) != "" {
		if err := lockConditional(ctx, tx); err != nil {
			return nil, err
		}
		matches, err := s.conditionalMatches(ctx, tx, typ, ifNoneExist)
		if err != nil {
			return nil, err
		}
		switch len(matches) {
		case 0:
		case 1:
			m := matches[0]
			return &Result{Status: http.StatusOK, Resource: &m, Body: m.Body, Issues: []outcome.Issue{{
				Severity: "information", Code: "duplicate",
				Diagnostics: fmt.Sprintf("a matching resource exists (%s/%s); nothing was created", m.Type, m.ID),
			}}}, nil
		default:
			return nil, preconditionFailed("the If-None-Exist criteria match more than one %s resource", typ)
		}
	}
	if id == "" {
		id = NewID()
	}
	r, err := s.writeVersion(ctx, tx, typ, id, nil, res, http.MethodPost, now)
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusCreated, Resource: r, Body: r.Body}, nil
}

// conditionalLocker is a store.Tx whose transactions can take turns on
// conditional writes (PostgreSQL; SQLite's writers take turns anyway):
// without it, concurrent conditional creates of the same criteria each
// found no match and each created the resource.
type conditionalLocker interface {
	LockConditional(ctx context.Context) error
}

// lockConditional takes tx's conditional-write lock, if it has one,
// before a conditional create or update searches for its match.
func lockConditional(ctx context.Context, tx store.Tx) error {
	if l, ok := tx.(conditionalLocker); ok {
		return l.LockConditional(ctx)
	}
	return nil
}

// conditionalMatches runs the criteria of a conditional interaction
// inside tx (under the access filter) and returns up to two matches.
func (s *Service) conditionalMatches(ctx context.Context, r reader, typ, criteria string) ([]store.Resource, error) {
	// ';' is not a separator in FHIR queries; keep url.ParseQuery from
	// refusing it.
	criteria = strings.ReplaceAll(criteria, ";", "%3B")
	req, err := s.parser.ParseConditional(typ, criteria)
	if err != nil {
		return nil, err
	}
	q := req.Query
	q.Count = 2
	q.Offset = 0
	q.Total = store.TotalNone
	q.Include, q.RevInclude, q.Sort = nil, nil, nil
	q.Snapshot = ""
	q.Filter = s.access.Filter(ctx)
	res, err := r.Search(ctx, &q)
	if err != nil {
		return nil, err
	}
	return res.Matches, nil
}

// Read returns the current version of typ/id (GET [base]/[type]/[id]).
// A deleted resource is a 410, an unknown one a 404.
func (s *Service) Read(ctx context.Context, typ, id string) (*Result, error) {
	if err := s.admit(ctx, InteractionRead, typ, id, false); err != nil {
		return nil, err
	}
	r, err := s.readVisible(ctx, s.st, typ, id)
	if err != nil {
		return nil, s.internal(ctx, "read", err)
	}
	return &Result{Status: http.StatusOK, Resource: r, Body: r.Body}, nil
}

// readVisible reads the current, non-deleted version of typ/id.
func (s *Service) readVisible(ctx context.Context, rd reader, typ, id string) (*store.Resource, error) {
	cur, err := s.current(ctx, rd, typ, id, false)
	if errors.Is(err, errHidden) {
		return nil, notFound(typ, id)
	}
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, notFound(typ, id)
	}
	if cur.Deleted {
		return nil, gone(typ, id)
	}
	return cur, nil
}

// VRead returns one version of typ/id (GET [base]/[type]/[id]/_history/[vid]).
// A delete-marker version is a 410.
func (s *Service) VRead(ctx context.Context, typ, id string, version int64) (*Result, error) {
	if err := s.admit(ctx, InteractionVRead, typ, id, false); err != nil {
		return nil, err
	}
	r, err := s.vread(ctx, s.st, typ, id, version)
	if err != nil {
		return nil, s.internal(ctx, "vread", err)
	}
	return &Result{Status: http.StatusOK, Resource: r, Body: r.Body}, nil
}

type vreader interface {
	reader
	VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error)
	History(ctx context.Context, q store.HistoryQuery) (*store.HistoryPage, error)
}

func (s *Service) vread(ctx context.Context, st vreader, typ, id string, version int64) (*store.Resource, error) {
	noVersion := outcome.NotFound("%s/%s has no version %d", typ, id, version)
	if version < 1 {
		return nil, noVersion
	}
	var r *store.Resource
	if f := s.access.Filter(ctx); f != nil {
		// The resource must be visible now (its current version) ...
		cur, err := s.current(ctx, st, typ, id, false)
		if err != nil {
			if errors.Is(err, errHidden) {
				return nil, notFound(typ, id)
			}
			return nil, err
		}
		switch {
		case cur != nil && cur.VersionID == version:
			r = cur
		case !unrestricted(f, typ):
			// ... and, when the grant on the type is limited by content,
			// so must the version itself have been: an earlier version
			// may have been in another compartment or category.
			page, err := st.History(ctx, store.HistoryQuery{Type: typ, ID: id, Version: version, Count: 1, Filter: f})
			if err != nil {
				return nil, err
			}
			if len(page.Versions) == 0 {
				return nil, noVersion
			}
			r = &page.Versions[0]
		}
	}
	if r == nil {
		var err error
		r, err = st.VRead(ctx, typ, id, version)
		if errors.Is(err, store.ErrNotFound) {
			return nil, noVersion
		}
		if err != nil {
			return nil, err
		}
	}
	if r.Deleted {
		return nil, outcome.New(http.StatusGone, "deleted", "version %d of %s/%s is a deletion", version, typ, id)
	}
	return r, nil
}

// Update replaces typ/id with the body (PUT [base]/[type]/[id]). The body's
// resourceType and id must match the URL (400 otherwise). A resource that
// does not exist (or is deleted) is created with the client's id (201).
// ifMatch is the If-Match header ("" for none): "*" or a list of version
// ETags (W/"n") one of which must be the current version, else 412.
func (s *Service) Update(ctx context.Context, typ, id string, body []byte, ifMatch string) (*Result, error) {
	version, err := s.admitVersioned(ctx, InteractionUpdate, typ, id, false, ifMatch)
	if err != nil {
		return nil, err
	}
	res, err := s.decodeForType(body, typ)
	if err != nil {
		return nil, err
	}
	if err := checkBodyID(res, id); err != nil {
		return nil, err
	}
	return s.versionedWrite(ctx, version, "update", func(tx store.Tx) (*Result, error) {
		return s.updateTx(ctx, tx, typ, id, deepCopy(res).(map[string]any), version, http.MethodPut, s.timestamp())
	}, func() error {
		return version.stale(typ + "/" + id)
	})
}

// checkBodyID checks that the body's id equals the URL id (R4: a missing
// or different id is a 400).
func checkBodyID(res map[string]any, id string) error {
	bid, present := res["id"]
	if !present {
		return outcome.BadRequest("the resource has no id; an update must carry the id %q of the URL", id).At("id")
	}
	if bs, ok := bid.(string); !ok || bs != id {
		return outcome.BadRequest("the resource id %v does not match the id %q in the URL", bid, id).At("id")
	}
	return nil
}

// updateTx writes res as the next version of typ/id inside tx.
func (s *Service) updateTx(ctx context.Context, tx store.Tx, typ, id string, res map[string]any, ifMatch precondition, method string, now time.Time) (*Result, error) {
	cur, err := s.current(ctx, tx, typ, id, true)
	if errors.Is(err, errHidden) {
		return nil, s.writeHidden(ctx, tx, typ, id)
	}
	if err != nil {
		return nil, err
	}
	if err := ifMatch.check(cur, typ, id); err != nil {
		return nil, err
	}
	if unchanged(cur, typ, id, res) {
		return unchangedResult(cur), nil
	}
	r, err := s.writeVersion(ctx, tx, typ, id, cur, res, method, now)
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if cur == nil || cur.Deleted {
		status = http.StatusCreated
	}
	return &Result{Status: status, Resource: r, Body: r.Body}, nil
}

// unchanged reports whether res, to be written after cur, holds cur's
// content: the body cur's version would have with res, meta.versionId and
// meta.lastUpdated aside. An update or patch that changes nothing writes
// no version (as HAPI does; R4 leaves it open): the current version
// answers, with its ETag and Last-Modified, and history stays as it was.
func unchanged(cur *store.Resource, typ, id string, res map[string]any) bool {
	if cur == nil || cur.Deleted {
		return false
	}
	meta := map[string]any{}
	if m, present := res["meta"]; present {
		mm, ok := m.(map[string]any)
		if !ok {
			return false
		}
		meta = maps.Clone(mm)
	}
	meta["versionId"], meta["lastUpdated"] = strconv.FormatInt(cur.VersionID, 10), fhirtime.FormatInstant(cur.LastUpdated)
	c := maps.Clone(res)
	c["resourceType"], c["id"], c["meta"] = typ, id, meta
	b, err := MarshalResource(c)
	return err == nil && bytes.Equal(b, cur.Body)
}

// unchangedResult is the answer to an update or patch that changed
// nothing: the current version cur.
func unchangedResult(cur *store.Resource) *Result {
	return &Result{Status: http.StatusOK, Resource: cur, Body: cur.Body, Unchanged: true, Issues: []outcome.Issue{{
		Severity: "information", Code: "informational",
		Diagnostics: fmt.Sprintf("the content of %s/%s is unchanged; version %d stays current and no version was written", cur.Type, cur.ID, cur.VersionID),
	}}}
}

// ConditionalUpdate updates the resource matching criteria (PUT
// [base]/[type]?[criteria]). No match: the resource is created, with the
// body's id when given (update-as-create) or a new id. One match: it is
// updated; a body id different from the match is a 400. Several matches:
// 412.
func (s *Service) ConditionalUpdate(ctx context.Context, typ, criteria string, body []byte, ifMatch string) (*Result, error) {
	version, err := s.admitVersioned(ctx, InteractionUpdate, typ, "", true, ifMatch)
	if err != nil {
		return nil, err
	}
	res, err := s.decodeForType(body, typ)
	if err != nil {
		return nil, err
	}
	return s.versionedWrite(ctx, version, "conditional update", func(tx store.Tx) (*Result, error) {
		return s.conditionalUpdateTx(ctx, tx, typ, criteria, deepCopy(res).(map[string]any), version, s.timestamp())
	}, func() error {
		return version.stale("the resource")
	})
}

// resolveConditionalUpdate returns the id a conditional update writes to
// and whether it matched an existing resource.
func (s *Service) resolveConditionalUpdate(ctx context.Context, tx store.Tx, typ, criteria string, res map[string]any) (string, error) {
	if err := lockConditional(ctx, tx); err != nil {
		return "", err
	}
	matches, err := s.conditionalMatches(ctx, tx, typ, criteria)
	if err != nil {
		return "", err
	}
	bid, hasID := res["id"]
	bidStr, _ := bid.(string)
	if hasID && (bidStr == "" || !ValidID(bidStr)) {
		return "", outcome.BadRequest("invalid resource id %v", bid).At("id")
	}
	switch len(matches) {
	case 0:
		if !hasID {
			return NewID(), nil
		}
		// R4 http.html#cond-update: no match and a body id that already
		// exists is a 409; an unknown (or deleted) id is an update as create.
		cur, err := s.current(ctx, tx, typ, bidStr, true)
		if errors.Is(err, errHidden) {
			return "", outcome.New(http.StatusConflict, "conflict", "no %s matches the criteria, and the resource id %q in the body cannot be used", typ, bidStr).At("id")
		}
		if err != nil {
			return "", err
		}
		if cur != nil && !cur.Deleted {
			return "", outcome.New(http.StatusConflict, "conflict", "no %s matches the criteria, but %s/%s exists; a conditional update may not overwrite a resource the criteria do not match", typ, typ, bidStr).At("id")
		}
		return bidStr, nil
	case 1:
		if hasID && bidStr != matches[0].ID {
			return "", outcome.BadRequest("the resource id %q does not match the id %q of the resource found by the criteria", bidStr, matches[0].ID).At("id")
		}
		return matches[0].ID, nil
	default:
		return "", preconditionFailed("the criteria match more than one %s resource", typ)
	}
}

func (s *Service) conditionalUpdateTx(ctx context.Context, tx store.Tx, typ, criteria string, res map[string]any, ifMatch precondition, now time.Time) (*Result, error) {
	id, err := s.resolveConditionalUpdate(ctx, tx, typ, criteria, res)
	if err != nil {
		return nil, err
	}
	return s.updateTx(ctx, tx, typ, id, res, ifMatch, http.MethodPut, now)
}

// Patch applies a JSON Patch (RFC 6902, application/json-patch+json) to
// typ/id (PATCH [base]/[type]/[id]). A malformed patch is a 400; a patch
// that cannot be applied (failed test, missing path) or whose result is
// not a valid resource is a 422; changing id or resourceType is a 400.
func (s *Service) Patch(ctx context.Context, typ, id string, patch []byte, ifMatch string) (*Result, error) {
	version, err := s.admitVersioned(ctx, InteractionPatch, typ, id, false, ifMatch)
	if err != nil {
		return nil, err
	}
	ops, err := parsePatch(patch)
	if err != nil {
		return nil, err
	}
	return s.versionedWrite(ctx, version, "patch", func(tx store.Tx) (*Result, error) {
		return s.patchTx(ctx, tx, typ, id, ops, version, s.timestamp())
	}, func() error {
		return version.stale(typ + "/" + id)
	})
}

// ConditionalPatch patches the single resource matching criteria (PATCH
// [base]/[type]?[criteria]): no match 404, several 412.
func (s *Service) ConditionalPatch(ctx context.Context, typ, criteria string, patch []byte, ifMatch string) (*Result, error) {
	version, err := s.admitVersioned(ctx, InteractionPatch, typ, "", true, ifMatch)
	if err != nil {
		return nil, err
	}
	ops, err := parsePatch(patch)
	if err != nil {
		return nil, err
	}
	return s.versionedWrite(ctx, version, "conditional patch", func(tx store.Tx) (*Result, error) {
		id, err := s.resolveSingle(ctx, tx, typ, criteria)
		if err != nil {
			return nil, err
		}
		return s.patchTx(ctx, tx, typ, id, ops, version, s.timestamp())
	}, func() error {
		return version.stale("the resource")
	})
}

// resolveSingle returns the id of the single match of criteria: none is a
// 404, several a 412.
func (s *Service) resolveSingle(ctx context.Context, r reader, typ, criteria string) (string, error) {
	matches, err := s.conditionalMatches(ctx, r, typ, criteria)
	if err != nil {
		return "", err
	}
	switch len(matches) {
	case 0:
		return "", outcome.NotFound("no %s resource matches the criteria", typ)
	case 1:
		return matches[0].ID, nil
	default:
		return "", preconditionFailed("the criteria match more than one %s resource", typ)
	}
}

func parsePatch(patch []byte) ([]patchOp, error) {
	ops, err := parseJSONPatch(patch)
	if err != nil {
		return nil, patchOutcome(err)
	}
	return ops, nil
}

func patchOutcome(err error) error {
	var pe *PatchError
	if !errors.As(err, &pe) {
		return err
	}
	if pe.Malformed {
		return outcome.New(http.StatusBadRequest, "invalid", "%s", pe.Error())
	}
	return outcome.New(http.StatusUnprocessableEntity, "processing", "%s", pe.Error())
}

// patchTx applies ops to the current version of typ/id inside tx.
func (s *Service) patchTx(ctx context.Context, tx store.Tx, typ, id string, ops []patchOp, ifMatch precondition, now time.Time) (*Result, error) {
	cur, err := s.current(ctx, tx, typ, id, true)
	if errors.Is(err, errHidden) {
		return nil, s.writeHidden(ctx, tx, typ, id)
	}
	if err == nil && cur == nil {
		return nil, notFound(typ, id)
	}
	if err != nil {
		return nil, err
	}
	if cur.Deleted {
		return nil, gone(typ, id)
	}
	if err := ifMatch.check(cur, typ, id); err != nil {
		return nil, err
	}
	doc, err := decodeStored(cur.Body)
	if err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", typ, errors.New(err.Error()))
	}
	patched, err := applyOps(doc, ops)
	if err != nil {
		return nil, patchOutcome(err)
	}
	res, ok := patched.(map[string]any)
	if !ok {
		return nil, outcome.New(http.StatusUnprocessableEntity, "processing", "the patched document is not a JSON object")
	}
	if rt, _ := res["resourceType"].(string); rt != typ {
		return nil, outcome.BadRequest("a patch may not change the resourceType").At("resourceType")
	}
	if rid, _ := res["id"].(string); rid != id {
		return nil, outcome.BadRequest("a patch may not change the id").At("id")
	}
	if unchanged(cur, typ, id, res) {
		return unchangedResult(cur), nil
	}
	r, err := s.writeVersion(ctx, tx, typ, id, cur, res, http.MethodPatch, now)
	if err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) && oe.Status == http.StatusBadRequest {
			// The patch document was fine; its result is not a valid resource.
			return nil, &outcome.Error{Status: http.StatusUnprocessableEntity, Issues: oe.Issues}
		}
		return nil, err
	}
	return &Result{Status: http.StatusOK, Resource: r, Body: r.Body}, nil
}

// Delete deletes typ/id (DELETE [base]/[type]/[id]) by storing a delete
// marker version. Deleting a resource that does not exist or is already
// deleted succeeds without writing (idempotent, R4 http.html#delete):
// Result.Status is 204 and Result.Resource is nil. ifMatch, when given,
// must be the current version (412 otherwise).
func (s *Service) Delete(ctx context.Context, typ, id string, ifMatch string) (*Result, error) {
	version, err := s.admitVersioned(ctx, InteractionDelete, typ, id, false, ifMatch)
	if err != nil {
		return nil, err
	}
	return s.versionedWrite(ctx, version, "delete", func(tx store.Tx) (*Result, error) {
		return s.deleteTx(ctx, tx, typ, id, version, s.timestamp())
	}, func() error {
		return version.stale(typ + "/" + id)
	})
}

func (s *Service) deleteTx(ctx context.Context, tx store.Tx, typ, id string, ifMatch precondition, now time.Time) (*Result, error) {
	cur, err := s.current(ctx, tx, typ, id, true)
	if errors.Is(err, errHidden) {
		return nil, s.writeHidden(ctx, tx, typ, id)
	}
	if err != nil {
		return nil, err
	}
	if err := ifMatch.check(cur, typ, id); err != nil {
		return nil, err
	}
	if cur == nil {
		return &Result{Status: http.StatusNoContent, Issues: []outcome.Issue{{Severity: "information", Code: "not-found",
			Diagnostics: fmt.Sprintf("%s/%s does not exist; nothing was deleted", typ, id)}}}, nil
	}
	if cur.Deleted {
		return &Result{Status: http.StatusNoContent, Resource: cur, Issues: []outcome.Issue{{Severity: "information", Code: "deleted",
			Diagnostics: fmt.Sprintf("%s/%s was already deleted", typ, id)}}}, nil
	}
	r, err := s.writeDelete(ctx, tx, cur, now)
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusNoContent, Resource: r, Issues: []outcome.Issue{{Severity: "information", Code: "informational",
		Diagnostics: fmt.Sprintf("%s/%s was deleted (version %d)", typ, id, r.VersionID)}}}, nil
}

// ConditionalDelete deletes the resource matching criteria (DELETE
// [base]/[type]?[criteria]). Lapis supports single conditional deletes:
// no match succeeds with 204 and nothing deleted (like a delete of a
// missing resource), one match is deleted, several matches fail with 412.
func (s *Service) ConditionalDelete(ctx context.Context, typ, criteria string) (*Result, error) {
	if err := s.admit(ctx, InteractionDelete, typ, "", true); err != nil {
		return nil, err
	}
	var out *Result
	err := s.update(ctx, true, func(tx store.Tx) error {
		r, err := s.conditionalDeleteTx(ctx, tx, typ, criteria, s.timestamp())
		out = r
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "conditional delete", err)
	}
	return out, nil
}

func (s *Service) conditionalDeleteTx(ctx context.Context, tx store.Tx, typ, criteria string, now time.Time) (*Result, error) {
	matches, err := s.conditionalMatches(ctx, tx, typ, criteria)
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 0:
		return &Result{Status: http.StatusNoContent, Issues: []outcome.Issue{{Severity: "information", Code: "not-found",
			Diagnostics: fmt.Sprintf("no %s resource matches the criteria; nothing was deleted", typ)}}}, nil
	case 1:
		return s.deleteTx(ctx, tx, typ, matches[0].ID, precondition{}, now)
	default:
		return nil, preconditionFailed("the criteria match more than one %s resource; multiple deletes are not supported", typ)
	}
}

// admitVersioned admits an interaction (see admit) that writes a new
// version and parses its If-Match header ("" for none: version 0).
func (s *Service) admitVersioned(ctx context.Context, op Interaction, typ, id string, conditional bool, ifMatch string) (precondition, error) {
	if err := s.admit(ctx, op, typ, id, conditional); err != nil {
		return precondition{}, err
	}
	return parseIfMatch(ifMatch)
}

// admit runs the checks every interaction starts with: a known resource
// type, a valid id (instance interactions), and the access decision for op
// — plus search access for conditional interactions, which have criteria
// instead of an id.
func (s *Service) admit(ctx context.Context, op Interaction, typ, id string, conditional bool) error {
	if err := s.checkType(typ); err != nil {
		return err
	}
	if !conditional {
		if err := checkID(id); err != nil {
			return err
		}
	}
	return s.checkAccess(ctx, op, typ, conditional)
}

// checkAccess is the access decision for op on typ, plus search access
// when the interaction is conditional (it has criteria instead of an id).
func (s *Service) checkAccess(ctx context.Context, op Interaction, typ string, conditional bool) error {
	if err := s.access.Check(ctx, op, typ); err != nil {
		return err
	}
	if conditional {
		return s.access.Check(ctx, InteractionSearchType, typ)
	}
	return nil
}

// versionedWrite runs write in one store transaction (retried on conflict
// when no version was asked for). A conflict under If-Match (version != 0)
// becomes the 412 made by stale; any other store failure is an internal
// error reported under op.
func (s *Service) versionedWrite(ctx context.Context, version precondition, op string, write func(tx store.Tx) (*Result, error), stale func() error) (*Result, error) {
	var out *Result
	err := s.update(ctx, !version.pinned(), func(tx store.Tx) error {
		r, err := write(tx)
		out = r
		return err
	})
	if err != nil {
		if version.pinned() && errors.Is(err, store.ErrConflict) {
			return nil, stale()
		}
		return nil, s.internal(ctx, op, err)
	}
	return out, nil
}
