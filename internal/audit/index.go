package audit

import (
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirid"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/store"
)

// The search index of the AuditEvents the recorder writes, built from
// the auditEvent itself: the rows the generic extractor (FHIRPath over
// the decoded JSON) makes of the R4 AuditEvent search parameters, at a
// fraction of its cost. The copy of every read's record paid that
// extraction. TestDirectIndexMatchesExtractor holds the two equal for
// randomized events; at Start the recorder checks them equal on probe
// events with the configured Indexer (which may know more parameters)
// and keeps the generic extraction when they are not. An event outside
// the shapes handled here (a reference that is not "Type/id", which the
// extractor may resolve against the base URL) is extracted generically.

// directIndex returns the index rows of ae, or false when ae must go
// through the generic extractor.
func (ae *auditEvent) directIndex() (store.Index, bool) {
	var ix store.Index
	tok := func(param, system, code, display string) {
		if system == "" && code == "" && display == "" {
			return
		}
		ix.Tokens = append(ix.Tokens, store.TokenRow{Param: param, System: jsonStr(system), Code: jsonStr(code), Text: normText(display)})
	}
	// action, outcome: codes of required bindings (the extractor takes
	// the system from the binding).
	if ae.Action != "" {
		tok("action", "http://hl7.org/fhir/audit-event-action", ae.Action, "")
	}
	if ae.Outcome != "" {
		tok("outcome", "http://hl7.org/fhir/audit-event-outcome", ae.Outcome, "")
	}
	for i := range ae.Entity {
		if r := ae.Entity[i].Role; r != nil {
			tok("entity-role", r.System, r.Code, r.Display)
		}
	}
	for i := range ae.Entity {
		if t := ae.Entity[i].Type; t != nil {
			tok("entity-type", t.System, t.Code, t.Display)
		}
	}
	if ae.Source.Site != "" {
		tok("site", "", ae.Source.Site, "")
	}
	for _, c := range ae.Subtype {
		tok("subtype", c.System, c.Code, c.Display)
	}
	tok("type", ae.Type.System, ae.Type.Code, ae.Type.Display)

	str := func(param, s string) {
		if s == "" {
			return
		}
		s = jsonStr(s)
		ix.Strings = append(ix.Strings, store.StringRow{Param: param, Norm: store.NormalizeString(s), Exact: s})
	}
	for i := range ae.Agent {
		if n := ae.Agent[i].Network; n != nil {
			str("address", n.Address)
		}
	}
	for i := range ae.Agent {
		str("agent-name", ae.Agent[i].Name)
	}

	// References: only relative "Type/id[/_history/vid]" ones, which
	// resolve without the base URL.
	// A reference that is neither absent nor relative makes the event
	// unindexable (valid turns false).
	type ref struct{ typ, id, url string }
	var agents, entities []ref
	valid := true
	parse := func(dst *[]ref, r *reference) {
		if r == nil || r.Reference == "" {
			return
		}
		typ, id, ok := splitRelative(r.Reference)
		if !ok {
			valid = false
			return
		}
		*dst = append(*dst, ref{typ, id, r.Reference})
	}
	for i := range ae.Agent {
		parse(&agents, ae.Agent[i].Who)
	}
	for i := range ae.Entity {
		parse(&entities, ae.Entity[i].What)
	}
	if !valid {
		return store.Index{}, false
	}
	refRow := func(param string, r ref) {
		ix.References = append(ix.References, store.ReferenceRow{Param: param, TargetType: r.typ, TargetID: r.id, URL: r.url})
	}
	for _, r := range agents {
		refRow("agent", r)
	}
	for _, r := range entities {
		refRow("entity", r)
	}
	// patient: agent.who | entity.what, where the target is a Patient.
	for _, r := range agents {
		if r.typ == "Patient" {
			refRow("patient", r)
		}
	}
	for _, r := range entities {
		if r.typ == "Patient" {
			refRow("patient", r)
		}
	}

	if t, err := fhirtime.Parse(ae.Recorded); err == nil {
		ix.Dates = append(ix.Dates, store.DateRow{Param: "date", Lo: t.Lo, Hi: t.Hi})
	}

	uri := func(param, s string) {
		if s != "" {
			ix.URIs = append(ix.URIs, store.URIRow{Param: param, URI: jsonStr(s)})
		}
	}
	for _, p := range ae.Meta.Profile {
		uri("_profile", p)
	}
	for i := range ae.Agent {
		for _, p := range ae.Agent[i].Policy {
			uri("policy", p)
		}
	}
	return ix, true
}

// normText is a token row's text: the normalized display.
func normText(display string) string {
	if display == "" {
		return ""
	}
	return store.NormalizeString(jsonStr(display))
}

// splitRelative parses "Type/id" or "Type/id/_history/vid" as the
// extractor does (absolute references are not its).
func splitRelative(s string) (typ, id string, ok bool) {
	if strings.IndexByte(s, ':') >= 0 {
		return "", "", false
	}
	return fhirid.SplitRelative(s)
}

// probeEvents are events with every field the recorder writes set, in
// the shapes it writes: REST reads and searches by a user or a patient,
// writes, and security events.
func probeEvents() []Event {
	at := time.UnixMilli(1700000000123).UTC()
	return []Event{
		{Time: at, Kind: KindREST, Action: "R", Interaction: "read", Outcome: OutcomeSuccess, Status: 200, ClientID: "app", Subject: "u1",
			FHIRUser: "Practitioner/p1", Method: "bearer", CredentialID: "jti-1", Address: "10.0.0.1", UserAgent: "probe", Patient: "pat1", Returned: 1,
			Entities: []Entity{{Type: "Observation", ID: "o1", Version: "2", Role: "domain"}, {Role: "query", Query: "Observation?code=x"}}},
		{Time: at, Kind: KindREST, Action: "E", Interaction: "search-type", Outcome: OutcomeMinor, Status: 404, Description: "Not found",
			FHIRUser: "Patient/pat2", Subject: "Ü", Address: "::1", Patient: "pat2", Returned: 3, Occurrences: 2,
			Entities: []Entity{{Type: "Patient", ID: "pat2", Role: "domain"}, {Role: "query", Query: "Patient?name=x"}}},
		{Time: at, Kind: KindLoginFailure, Action: "E", Outcome: OutcomeSerious, Address: "host.example", Description: "Bad password"},
		{Time: at, Kind: KindAPIKeyCreated, Action: "C", ClientID: "admin", Method: "apikey", CredentialID: "k1", Status: 201},
	}
}

// directIndexAgrees reports whether ix (the configured Indexer) makes
// of the probe events the rows directIndex makes: when it knows more
// AuditEvent search parameters, or differs anyhow, the copy keeps to it.
func directIndexAgrees(ix Indexer, site string) bool {
	for i, ev := range probeEvents() {
		ae := newAuditEvent(&ev, "probe"+strconv.Itoa(i), ev.Time, Source{Site: site, Instance: "probe"})
		direct, ok := ae.directIndex()
		if !ok {
			return false
		}
		generic, err := ix.Extract(ae.toMap())
		if err != nil || !sameIndex(direct, generic) {
			return false
		}
	}
	return true
}

// sameIndex reports whether a and b hold the same rows in each table,
// in any order.
func sameIndex(a, b store.Index) bool {
	return sameRows(a.Strings, b.Strings) && sameRows(a.Tokens, b.Tokens) && sameRows(a.References, b.References) &&
		sameRows(a.Dates, b.Dates) && sameRows(a.Numbers, b.Numbers) && sameRows(a.Quantities, b.Quantities) && sameRows(a.URIs, b.URIs)
}

func sameRows[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	n := make(map[T]int, len(a))
	for _, r := range a {
		n[r]++
	}
	for _, r := range b {
		if n[r] == 0 {
			return false
		}
		n[r]--
	}
	return true
}

// compactIndex drops the index rows of an AuditEvent that no search can
// tell from another row of the same record, so the copy writes fewer
// (each index row is three to five B-tree inserts, most of the copy's
// cost):
//   - a row equal to another of its table: a read's AuditEvent has two
//     entities of type "System Object" (the resource read and the report),
//     two equal entity-type rows;
//   - a reference row to a local resource ("Type/id" or
//     "Type/id/_history/n", relative) equal to another but for its URL: a
//     local reference matches searches, _include, _revinclude, chains,
//     compartments and _sort by its target type and id only (the URL is
//     compared only for absolute values that are not under the base,
//     and sorts only references without a target; see package search: a
//     version-specific reference value matches regardless of version). The
//     AuditEvent of a read of a Patient names it as the patient
//     ("Patient/x") and as the resource read ("Patient/x/_history/1"), in
//     the entity and the patient parameters: two of its four rows.
//
// The rows kept are the first of each kind, in order; ix's slices are
// reused.
func compactIndex(ix *store.Index) {
	ix.Strings = uniqueRows(ix.Strings, func(r store.StringRow) store.StringRow { return r })
	ix.Tokens = uniqueRows(ix.Tokens, func(r store.TokenRow) store.TokenRow { return r })
	ix.References = uniqueRows(ix.References, func(r store.ReferenceRow) store.ReferenceRow {
		if r.TargetType != "" && strings.IndexByte(r.URL, ':') < 0 {
			r.URL = "" // a local reference: its target is its search value
		}
		return r
	})
	ix.Dates = uniqueRows(ix.Dates, func(r store.DateRow) store.DateRow { return r })
	ix.Numbers = uniqueRows(ix.Numbers, func(r store.NumberRow) store.NumberRow { return r })
	ix.Quantities = uniqueRows(ix.Quantities, func(r store.QuantityRow) store.QuantityRow { return r })
	ix.URIs = uniqueRows(ix.URIs, func(r store.URIRow) store.URIRow { return r })
}

// uniqueRows keeps the first of the rows of rs with the same key, in
// order, in rs's array. A record has a few rows per table: the quadratic
// scan costs less than a map.
func uniqueRows[T any, K comparable](rs []T, key func(T) K) []T {
	out := rs[:0]
next:
	for _, r := range rs {
		k := key(r)
		for _, o := range out {
			if key(o) == k {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}
