package access

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// Policy is the resource.Access that enforces the SMART scopes of the
// Principal in the request context.
//
// The model:
//
//   - Check maps the interaction to a permission (read, vread,
//     history-instance → r; search-type, search-system, history-type,
//     history-system → s; create → c; update, patch → u; delete → d) and
//     passes when a scope of the caller grants it on the type (or on "*").
//     A patient/ scope counts only when the caller has a patient in
//     context. Transactions and batches pass when the caller has any data
//     scope; their entries are checked one by one. Any other interaction
//     (e.g. operations, until they get their own Interaction) is refused.
//     No caller → 401 (code "login"); not granted → 403 (code "forbidden",
//     naming the missing scope).
//   - Filter gives every store query its visibility rules, per resource
//     type, from the scopes that grant r or s: a patient/ scope makes the
//     type visible inside the patient's compartment (R4 Patient
//     CompartmentDefinition, plus the patient's Devices and the Binaries
//     whose securityContext is the patient: Registry.PatientRecord), and
//     the sharedTypes (Practitioner, Organization, Location, Medication…)
//     visible whole; a user/ or system/ scope makes it visible
//     everywhere, a granular scope (?category=…) adds a token condition.
//     Several scopes on one type are alternatives (OR); types no scope
//     covers are invisible, also through _include, _revinclude, chains and
//     _has. A caller whose scopes make every type visible everywhere gets
//     no filter at all.
//   - Writes made through a patient/ scope (the write filter) are held to
//     the patient's exclusive compartment (store.Compartment.Exclusive):
//     the resource, before and after the write, must reference the patient
//     in context through a compartment parameter and no other Patient
//     through any of them (an Observation with subject B and performer A
//     is B's, not A's to write; an Appointment with A and B as actors is
//     not A's alone), and the only Patient writable is the patient's own.
//   - The user's identity (FHIRUser) bounds the scopes (see Effective): a
//     patient user is limited to their own compartment whatever the token
//     carries, so a mis-issued user/ or system/ scope cannot widen it.
//     For staff (Practitioner, PractitionerRole) user/ is "what the
//     practitioner's scopes say, across patients" (Lapis has no per-user
//     ACL yet), as system/ is for backend clients.
type Policy struct {
	reg         *definitions.Registry
	compartment map[string][]string

	mu    sync.Mutex
	cache map[string]*compiled
}

// cacheMax bounds the compiled-scope cache (scope sets are few: one per
// client configuration, not per token).
const cacheMax = 1024

// compiled is what a scope set means, independently of the patient.
type compiled struct {
	grants *Grants
	err    error
	// types are the filter rules (nil with all = true).
	types map[string][]store.AccessRule
	// all: every type visible everywhere (no filter).
	all bool
	// patientRules: some rules need the compartment.
	patientRules bool
}

// NewPolicy returns the Policy for the R4 definitions in reg.
func NewPolicy(reg *definitions.Registry) *Policy {
	comp := map[string][]string{}
	// The compartment's types and the patient-linked ones (Device,
	// Binary).
	for _, t := range reg.ResourceTypes() {
		if ps := reg.PatientRecord(t); len(ps) > 0 {
			comp[t] = ps
		}
	}
	return &Policy{reg: reg, compartment: comp, cache: map[string]*compiled{}}
}

var _ resource.Access = (*Policy)(nil)

// permFor returns the permission an interaction needs (0 for the bundle
// interactions, ok=false for unknown ones).
func permFor(op resource.Interaction) (Perm, bool) {
	switch op {
	case resource.InteractionRead, resource.InteractionVRead, resource.InteractionHistoryInstance:
		return PermRead, true
	case resource.InteractionSearchType, resource.InteractionSearchSystem,
		resource.InteractionHistoryType, resource.InteractionHistorySystem:
		return PermSearch, true
	case resource.InteractionCreate:
		return PermCreate, true
	case resource.InteractionUpdate, resource.InteractionPatch:
		return PermUpdate, true
	case resource.InteractionDelete:
		return PermDelete, true
	case resource.InteractionTransaction, resource.InteractionBatch:
		return 0, true
	}
	return 0, false
}

// Check implements resource.Access.
func (p *Policy) Check(ctx context.Context, op resource.Interaction, typ string) error {
	pr := principal.FromContext(ctx)
	if pr == nil {
		return outcome.New(http.StatusUnauthorized, "login", "authentication is required")
	}
	scopes, patient, valid := Effective(pr)
	if !valid {
		return forbidden(ctx, "the credential's patient context does not match its user")
	}
	c := p.compile(scopes, PermRead|PermSearch)
	if c.err != nil {
		return forbidden(ctx, "the credential's scopes are malformed")
	}
	perm, known := permFor(op)
	if !known {
		return forbidden(ctx, "the interaction %s is not permitted", op)
	}
	if typ == AuditType {
		return refused(ctx, checkAudit(scopes, perm))
	}
	patientOK := patient != ""
	for _, s := range c.grants.Scopes {
		if s.Context == ContextPatient && !patientOK {
			continue
		}
		if perm == 0 {
			return nil // bundle: entries are checked individually
		}
		if s.Perms&perm == 0 {
			continue
		}
		if typ == "" || s.Type == "*" || s.Type == typ {
			return nil
		}
	}
	if perm == 0 {
		return forbidden(ctx, "no scope grants access to any data")
	}
	return forbidden(ctx, "%s", missing(c.grants, patient, perm, typ))
}

// forbidden is the 403 of a scope that does not grant the interaction,
// its cause noted for the caller's activity.
func forbidden(ctx context.Context, format string, args ...any) error {
	httpx.SetRefusal(ctx, httpx.CauseScope)
	return outcome.New(http.StatusForbidden, "forbidden", format, args...)
}

// refused notes a scope refusal when err is one.
func refused(ctx context.Context, err error) error {
	if err != nil {
		httpx.SetRefusal(ctx, httpx.CauseScope)
	}
	return err
}

// missing describes the scope a refused interaction needs.
func missing(g *Grants, patient string, perm Perm, typ string) string {
	if typ == "" {
		typ = "*"
	}
	ctx := ContextUser
	for _, s := range g.Scopes {
		ctx = s.Context
		break
	}
	msg := "insufficient scope: " + ctx + "/" + typ + "." + perm.String() + " is required"
	if ctx == ContextPatient && patient == "" {
		msg += " (patient/ scopes need a patient in context)"
	}
	return msg
}

// nothing is the filter that lets nothing through.
var nothing = &store.AccessFilter{Types: map[string][]store.AccessRule{}}

// Filter implements resource.Access: the rows reads and searches may see
// (scopes with r or s).
func (p *Policy) Filter(ctx context.Context) *store.AccessFilter {
	return p.filter(ctx, PermRead|PermSearch)
}

// MatchFilter implements resource.MatchFilterer: the rows a search may
// match (scopes with s), or nil when that is exactly what Filter allows. A
// type granted r without s can be read and included, never matched; a
// granular s scope narrows matches even when r is broader.
func (p *Policy) MatchFilter(ctx context.Context) *store.AccessFilter {
	scopes, _, ok := contextScopes(ctx)
	if !ok {
		return nothing
	}
	rs := p.compile(scopes, PermRead|PermSearch)
	s := p.compile(scopes, PermSearch)
	if s.err != nil || rs.err != nil {
		return nothing
	}
	if s.all || (!rs.all && reflect.DeepEqual(s.types, rs.types)) {
		return nil
	}
	return p.filter(ctx, PermSearch)
}

// WriteFilter implements resource.WriteFilterer: the rows an update, patch
// or delete may target and a create or update may produce (scopes with c,
// u or d), so that write-only clients can write. Its compartment is
// exclusive: a patient/ scope writes only resources that belong to the
// patient in context alone.
func (p *Policy) WriteFilter(ctx context.Context) *store.AccessFilter {
	return p.filter(ctx, writePerms)
}

// contextScopes is Effective of the principal of ctx, without its
// patient/ scopes when it has no patient in context (they grant nothing
// then, as in Check: not even the sharedTypes, which they would make
// visible whole to _include and chains); false when there is none.
func contextScopes(ctx context.Context) (scopes []string, patient string, ok bool) {
	pr := principal.FromContext(ctx)
	if pr == nil {
		return nil, "", false
	}
	scopes, patient, ok = Effective(pr)
	if ok && patient == "" && slices.ContainsFunc(scopes, isPatientScope) {
		scopes = slices.DeleteFunc(slices.Clone(scopes), isPatientScope)
	}
	return scopes, patient, ok
}

// isPatientScope reports whether s is a patient/ scope.
func isPatientScope(s string) bool { return strings.HasPrefix(s, ContextPatient+"/") }

func (p *Policy) filter(ctx context.Context, perms Perm) *store.AccessFilter {
	scopes, patient, ok := contextScopes(ctx)
	if !ok {
		return nothing
	}
	c := p.compile(scopes, perms)
	switch {
	case c.err != nil:
		return nothing
	case c.all:
		return nil
	}
	f := &store.AccessFilter{Types: c.types}
	if c.patientRules && patient != "" {
		f.Compartment = &store.Compartment{Type: "Patient", ID: patient, Params: p.compartment,
			Exclusive: perms&writePerms != 0}
	}
	return f
}

// Grants returns the parsed scopes of the caller in ctx (nil without one).
func (p *Policy) Grants(ctx context.Context) (*Grants, error) {
	pr := principal.FromContext(ctx)
	if pr == nil {
		return nil, nil
	}
	scopes, _, valid := Effective(pr)
	if !valid {
		return &Grants{}, nil
	}
	c := p.compile(scopes, PermRead|PermSearch)
	return c.grants, c.err
}

// compile parses and compiles a scope set for the permissions perms (a
// scope counts when it grants any of them), memoized.
func (p *Policy) compile(scopes []string, perms Perm) *compiled {
	key := strconv.Itoa(int(perms)) + " " + strings.Join(scopes, " ")
	p.mu.Lock()
	c, ok := p.cache[key]
	p.mu.Unlock()
	if ok {
		return c
	}
	c = p.build(scopes, perms)
	p.mu.Lock()
	if len(p.cache) >= cacheMax {
		clear(p.cache)
	}
	p.cache[key] = c
	p.mu.Unlock()
	return c
}

func (p *Policy) build(scopes []string, perms Perm) *compiled {
	c := p.buildScopes(scopes, perms)
	if c.err != nil {
		return c
	}
	// AuditEvent: visible to admins only (for reads), never through a
	// data scope, whatever its wildcard.
	seeAudit := perms&writePerms == 0 && isAdmin(scopes)
	switch {
	case c.all && seeAudit:
	case c.all:
		c.all = false
		c.types = map[string][]store.AccessRule{"*": {{}}, AuditType: {}}
	case seeAudit:
		c.types[AuditType] = []store.AccessRule{{}}
	default:
		c.types[AuditType] = []store.AccessRule{}
	}
	return c
}

func (p *Policy) buildScopes(scopes []string, perms Perm) *compiled {
	g, err := ParseScopes(scopes)
	if err != nil {
		return &compiled{err: err}
	}
	c := &compiled{grants: g}
	types := map[string][]store.AccessRule{}
	for _, s := range g.Scopes {
		if s.Perms&perms == 0 {
			continue
		}
		rule := store.AccessRule{Compartment: s.Context == ContextPatient}
		if len(s.Params) > 0 {
			where, ok := p.granular(s.Type, s.Params)
			if !ok {
				continue // a restriction we cannot enforce grants nothing
			}
			rule.Where = where
		}
		if rule.Compartment && perms&writePerms == 0 {
			// Reading the shared types a patient's record points to.
			switch {
			case s.Type == "*":
				for _, t := range sharedTypes {
					types[t] = append(types[t], store.AccessRule{Where: sharedWhere(t, rule.Where)})
				}
			case slices.Contains(sharedTypes, s.Type):
				rule = store.AccessRule{Where: sharedWhere(s.Type, rule.Where)}
			}
		}
		types[s.Type] = append(types[s.Type], rule)
	}
	// A type with its own entry does not fall back to "*": merge.
	if wild, ok := types["*"]; ok {
		for t := range types {
			if t != "*" {
				types[t] = append(types[t], wild...)
			}
		}
	}
	for t, rs := range types {
		types[t] = simplify(rs)
	}
	if rs, ok := types["*"]; ok && len(rs) == 1 && isZero(rs[0]) {
		all := true
		for _, rs := range types {
			if len(rs) != 1 || !isZero(rs[0]) {
				all = false
			}
		}
		if all {
			c.all = true
			return c
		}
	}
	for _, rs := range types {
		for _, r := range rs {
			if r.Compartment {
				c.patientRules = true
			}
		}
	}
	c.types = types
	return c
}

// writePerms are the permissions that change data.
const writePerms = PermCreate | PermUpdate | PermDelete

// sharedTypes are the resource types outside the Patient compartment that
// a patient's record points to and that hold no patient's data of their
// own: the people, organisations, places and services of its care, and the
// medications and substances it names. A patient/ scope that grants r or s
// on one of them (by name or through "*") makes the whole type readable
// and searchable, as user/ would: a patient's app shows the practitioner of
// an encounter, the organisation of a coverage, the medication of a
// prescription (ONC g10's single-patient tests read every one they find
// referenced, and include Medications with _include). Writes through
// patient/ scopes stay held to the patient's own compartment, and the
// other types outside the compartment (Bundle, Basic…, and a Binary
// whose securityContext is not the patient) stay invisible to patient/
// scopes.
//
// Endpoint is not among them: its header often carries a credential.
var sharedTypes = []string{
	"HealthcareService", "Location", "Medication", "MedicationKnowledge",
	"Organization", "OrganizationAffiliation", "Practitioner", "PractitionerRole", "Substance",
}

// sharedWhere is where, the conditions of a patient/ scope on the shared
// type typ, with the conditions that keep a patient's own data of that
// type out: a Location that is a patient's residence (type PTRES, v3
// RoleCode) is not shared.
func sharedWhere(typ string, where []store.Clause) []store.Clause {
	if typ != "Location" {
		return where
	}
	residence := store.Clause{Negate: true, Any: []store.Predicate{{Param: "type", Token: &store.TokenMatch{Code: "PTRES"}}}}
	return append(slices.Clip(where), residence)
}

func isZero(r store.AccessRule) bool { return !r.Compartment && len(r.Where) == 0 }

// simplify drops rules implied by others: an unconditional rule implies
// all; an unconditional compartment rule implies the conditional
// compartment ones.
func simplify(rs []store.AccessRule) []store.AccessRule {
	var comp bool
	for _, r := range rs {
		if isZero(r) {
			return []store.AccessRule{{}}
		}
		if r.Compartment && len(r.Where) == 0 {
			comp = true
		}
	}
	if !comp {
		return rs
	}
	out := []store.AccessRule{{Compartment: true}}
	for _, r := range rs {
		if !r.Compartment {
			out = append(out, r)
		}
	}
	return out
}

// granular turns the restrictions of a scope on typ into store clauses.
// Only token parameters are supported (category, code, status, ...); on an
// explicit type the parameter must exist and be a token.
func (p *Policy) granular(typ string, params []Param) ([]store.Clause, bool) {
	var where []store.Clause
	for _, prm := range params {
		if typ != "*" {
			sp := p.reg.SearchParam(typ, prm.Name)
			if sp == nil || sp.Type != "token" {
				return nil, false
			}
		}
		var cl store.Clause
		vals := append([]string(nil), prm.Values...)
		sort.Strings(vals)
		for _, v := range vals {
			m := &store.TokenMatch{Code: v}
			if sys, code, ok := strings.Cut(v, "|"); ok {
				if code == "" {
					return nil, false // "system|" would grant a whole code system
				}
				m.System, m.Code = &sys, code
			}
			cl.Any = append(cl.Any, store.Predicate{Param: prm.Name, Token: m})
		}
		where = append(where, cl)
	}
	return where, true
}
