// Package search parses FHIR R4 search requests (query parameters) into the
// store's Query AST plus the presentation options (_summary, _elements)
// the REST layer applies. It validates every parameter against the search
// parameter definitions: invalid values and unsupported modifiers are 400
// errors (*outcome.Error); unknown or unsupported parameters are ignored
// (and reported) unless the client asked for strict handling.
//
// Semantics chosen where the specification leaves room:
//
//   - Number values denote the implicit range of their precision: half a
//     unit of the last significant digit on each side, half-open at the top
//     ("100" → [99.5, 100.5), "100.00" → [99.995, 100.005), "1e2" → [50,
//     150), "1.0e2" → [95, 105)) for eq, ne and ap. RangeMatch.Hi is the
//     largest float below the open bound. The ordering prefixes (lt, gt,
//     le, ge, sa, eb) compare with the exact value, as R4 specifies
//     ("lt100": less than exactly 100): their range is [v, v].
//   - ap on numbers and quantities widens the range by 10% of the value on
//     each side; ap on dates widens it by 10% of the distance between the
//     value (its midpoint) and now, at least one day on each side.
//   - Dates without a time zone are UTC.
//   - A version-specific reference value ("Patient/1/_history/2") and a
//     versioned canonical ("url|1.0") match the reference regardless of
//     version: versions are not indexed.
//   - Chains are one level deep; _has is one level and its parameter may
//     not itself be chained. Has predicates carry Param "_has".
//   - A chain without a type modifier is resolved to the single target type
//     of the reference parameter that defines the chained parameter; when
//     several do, the request is rejected asking for a type modifier.
package search

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// MaxValues is the largest number of search criteria values one search may
// have, counting every comma-separated value of every occurrence of every
// parameter (name=a,b&name=c is 3). Larger searches are a 400 (too-costly):
// each value becomes an SQL condition.
const MaxValues = 512

// MaxClauses is the largest number of search criteria (occurrences of
// search parameters, each an AND-ed SQL condition) one search may have.
// PostgreSQL's planning time grows steeply with the number of AND-ed
// subqueries (about 0.15 s at 64, seconds at 100).
const MaxClauses = 64

// Parser parses search requests. It is immutable and safe for concurrent
// use.
type Parser struct {
	reg          *definitions.Registry
	base         string // FHIR base URL without trailing slash
	maxCount     int
	defaultCount int
	now          func() time.Time
	// common holds the parameters applicable to every resource type (for
	// system-level searches without _type).
	common map[string]*definitions.SearchParam
}

// NewParser returns a Parser. baseURL is this server's FHIR base
// ("http://host/fhir"), used to recognise absolute references to local
// resources. maxCount caps _count; defaultCount is the page size when
// _count is absent.
func NewParser(reg *definitions.Registry, baseURL string, maxCount, defaultCount int) *Parser {
	if maxCount <= 0 {
		maxCount = 1000
	}
	if defaultCount <= 0 || defaultCount > maxCount {
		defaultCount = min(20, maxCount)
	}
	p := &Parser{
		reg:          reg,
		base:         strings.TrimRight(baseURL, "/"),
		maxCount:     maxCount,
		defaultCount: defaultCount,
		now:          time.Now,
		common:       map[string]*definitions.SearchParam{},
	}
	types := reg.ResourceTypes()
	if len(types) > 0 {
		for _, sp := range reg.SearchParams(types[0]) {
			p.common[sp.Code] = sp
		}
		for _, t := range types[1:] {
			for code, sp := range p.common {
				o := reg.SearchParam(t, code)
				if o == nil || o.Type != sp.Type || (o.Expression == "") != (sp.Expression == "") {
					delete(p.common, code)
				}
			}
		}
	}
	return p
}

// Request is a parsed search: the store query plus presentation options.
type Request struct {
	Query store.Query
	// Summary is the _summary value: "", "true", "text", "data", "count"
	// or "false".
	Summary string
	// Elements lists the _elements names, in request order without
	// duplicates.
	Elements []string
	// Canonical is the normalized query string for the Bundle self link:
	// only recognised parameters (keys as given, values sorted per key);
	// url.Values.Encode yields a stable, correctly escaped query.
	// _format and _pretty are left to the HTTP layer and not included.
	Canonical url.Values
	// Ignored lists the unknown or unsupported parameters (keys as given)
	// that were ignored, for an OperationOutcome warning.
	Ignored []string
	// Warnings holds one human-readable message per ignored parameter and
	// per adjusted value (e.g. _count reduced to the maximum), suitable as
	// OperationOutcome warning diagnostics.
	Warnings []string
}

// ignoreError marks a parameter that is unknown or unsupported: ignored in
// lenient mode, a 400 not-supported in strict mode.
type ignoreError struct{ msg string }

func (e *ignoreError) Error() string { return e.msg }

func ignoref(format string, args ...any) error {
	return &ignoreError{fmt.Sprintf(format, args...)}
}

func badf(format string, args ...any) error { return outcome.BadRequest(format, args...) }

func unsupportedf(format string, args ...any) error {
	return outcome.New(http.StatusBadRequest, "not-supported", format, args...)
}

// scope is the set of resource types a parameter applies to: one type, the
// _type list of a system search, or none (= all types).
type scope struct {
	types []string
}

func (s scope) String() string {
	if len(s.types) == 0 {
		return "all resource types"
	}
	return strings.Join(s.types, ", ")
}

// checkText refuses a parameter name or value that is not valid UTF-8 or
// holds a NUL character: no stored text can match it, and PostgreSQL
// refuses either in a statement.
func checkText(params url.Values) error {
	bad := func(s string) bool { return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 }
	for k, vs := range params {
		if bad(k) {
			return badf("Invalid parameter name %q: not valid UTF-8 text, or it holds a NUL character", outcome.Truncate(k, 100))
		}
		for _, v := range vs {
			if bad(v) {
				return badf("Invalid value %q for parameter %q: not valid UTF-8 text, or it holds a NUL character", outcome.Truncate(v, 100), outcome.Truncate(k, 100))
			}
		}
	}
	return nil
}

// Parse parses the search parameters for resourceType ("" = system level,
// where _type may list types). strict corresponds to Prefer:
// handling=strict: unknown or unsupported parameters are 400 errors
// instead of being ignored.
func (p *Parser) Parse(resourceType string, params url.Values, strict bool) (*Request, error) {
	req, err := p.parse(resourceType, params, strict)
	if err != nil {
		var oe *outcome.Error
		if !errors.As(err, &oe) {
			// Every error path produces *outcome.Error; guard anyway.
			oe = outcome.BadRequest("Invalid search request")
		}
		return nil, oe
	}
	return req, nil
}

// ParseConditional parses the criteria of a conditional interaction
// (If-None-Exist, conditional update/delete/patch: "identifier=x&..."). It
// is always strict: an unknown parameter must fail rather than match
// everything. A query without search criteria is a 400.
func (p *Parser) ParseConditional(resourceType, rawQuery string) (*Request, error) {
	q := strings.TrimPrefix(rawQuery, "?")
	// Tolerate "Patient?identifier=x" and "/Patient?..." forms.
	if i := strings.IndexByte(q, '?'); i >= 0 && !strings.ContainsAny(q[:i], "=&") {
		q = q[i+1:]
	}
	params, err := url.ParseQuery(q)
	if err != nil {
		return nil, outcome.BadRequest("Malformed conditional search criteria: the query string cannot be decoded")
	}
	req, err := p.Parse(resourceType, params, true)
	if err != nil {
		return nil, err
	}
	if len(req.Query.Where) == 0 {
		return nil, outcome.BadRequest("The conditional request has no search criteria")
	}
	return req, nil
}

func (p *Parser) parse(resourceType string, params url.Values, strict bool) (*Request, error) {
	if resourceType != "" && !p.reg.IsResourceType(resourceType) {
		return nil, outcome.New(http.StatusNotFound, "not-supported", "Unknown resource type %q", resourceType)
	}
	if err := checkText(params); err != nil {
		return nil, err
	}
	req := &Request{Canonical: url.Values{}}
	q := &req.Query
	q.Type = resourceType
	q.Count = p.defaultCount
	sc := scope{}
	if resourceType != "" {
		sc.types = []string{resourceType}
	}

	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	// _type first: it defines the scope of every other parameter.
	if vals := params["_type"]; len(vals) > 0 {
		if resourceType != "" {
			return nil, badf("Parameter _type is only allowed in a system-level search")
		}
		if len(vals) > 1 {
			return nil, badf("Parameter _type may appear only once")
		}
		seen := map[string]bool{}
		for _, t := range strings.Split(vals[0], ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				return nil, badf("Invalid value %q for parameter _type: empty type", vals[0])
			}
			if !p.reg.IsResourceType(t) {
				return nil, badf("Invalid value for parameter _type: %q is not a resource type", t)
			}
			if !seen[t] {
				seen[t] = true
				q.Types = append(q.Types, t)
			}
		}
		sc.types = q.Types
		req.Canonical["_type"] = []string{strings.Join(q.Types, ",")}
	}

	// costs is the estimated cost per parameter key (see Cost).
	costs := map[string]int{}
	values, clauses := 0, 0 // search criteria values and occurrences so far (see MaxValues)
	ignored := map[string]bool{}
	ignore := func(key, msg string) {
		if !ignored[key] {
			ignored[key] = true
			req.Ignored = append(req.Ignored, key)
			req.Warnings = append(req.Warnings, msg+"; the parameter was ignored")
		}
	}
	recognised := func(key, val string) { req.Canonical[key] = append(req.Canonical[key], val) }
	once := func(key string, vals []string) error {
		if len(vals) > 1 {
			return badf("Parameter %s may appear only once", key)
		}
		return nil
	}
	// count reads the one non-negative integer of key.
	count := func(key string, vals []string) (int, error) {
		if err := once(key, vals); err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(strings.TrimSpace(vals[0]))
		if err != nil || n < 0 {
			return 0, badf("Invalid value %q for parameter %s: expected a non-negative integer", vals[0], key)
		}
		return n, nil
	}

	for _, key := range keys {
		vals := params[key]
		if len(vals) == 0 {
			continue
		}
		name, mod, _ := strings.Cut(key, ":")
		switch {
		case key == "_type":
			continue
		case key == "_format" || key == "_pretty":
			// Handled by the HTTP layer.
			continue
		case key == "_count":
			n, err := count(key, vals)
			if err != nil {
				return nil, err
			}
			if n > p.maxCount {
				req.Warnings = append(req.Warnings, fmt.Sprintf("_count=%d exceeds the maximum page size; %d was used", n, p.maxCount))
				n = p.maxCount
			}
			q.Count = n
			recognised(key, strconv.Itoa(n))
		case key == "_offset":
			n, err := count(key, vals)
			if err != nil {
				return nil, err
			}
			q.Offset = n
			recognised(key, strconv.Itoa(n))
		case key == "_total":
			if err := once(key, vals); err != nil {
				return nil, err
			}
			switch vals[0] {
			case "none":
				q.Total = store.TotalNone
			case "estimate":
				q.Total = store.TotalEstimate
			case "accurate":
				q.Total = store.TotalAccurate
			default:
				return nil, badf("Invalid value %q for parameter _total: expected none, estimate or accurate", vals[0])
			}
			recognised(key, vals[0])
		case key == "_summary":
			if err := once(key, vals); err != nil {
				return nil, err
			}
			switch vals[0] {
			case "true", "text", "data", "count", "false":
				req.Summary = vals[0]
			default:
				return nil, badf("Invalid value %q for parameter _summary: expected true, text, data, count or false", vals[0])
			}
			recognised(key, vals[0])
		case key == "_elements":
			seen := map[string]bool{}
			for _, e := range req.Elements {
				seen[e] = true
			}
			for _, v := range vals {
				for _, e := range strings.Split(v, ",") {
					e = strings.TrimSpace(e)
					if !elementRE.MatchString(e) {
						return nil, badf("Invalid value %q for parameter _elements: %q is not an element name", v, e)
					}
					if !seen[e] {
						seen[e] = true
						req.Elements = append(req.Elements, e)
					}
				}
				recognised(key, v)
			}
		case name == "_sort":
			if err := once(key, vals); err != nil {
				return nil, err
			}
			if len(q.Sort) > 0 {
				return nil, badf("Parameter _sort may appear only once")
			}
			desc := false
			switch mod {
			case "", "asc":
			case "desc":
				desc = true
			default:
				return nil, badf("Unknown modifier %q on parameter _sort", mod)
			}
			keys, err := p.parseSort(sc, vals[0], desc)
			if err != nil {
				return nil, err
			}
			q.Sort = keys
			recognised(key, vals[0])
		case name == "_include" || name == "_revinclude":
			iterate := false
			switch mod {
			case "":
			case "iterate", "recurse":
				iterate = true
			default:
				return nil, badf("Unknown modifier %q on parameter %s (expected iterate)", mod, name)
			}
			for _, v := range vals {
				inc, err := p.parseInclude(sc, name, v, iterate)
				if err != nil {
					return nil, err
				}
				if name == "_include" {
					q.Include = append(q.Include, inc)
				} else {
					q.RevInclude = append(q.RevInclude, inc)
				}
				recognised(key, v)
			}
		case key == "_contained" || key == "_containedType":
			// Searching contained resources is not supported; only the
			// default behaviour is accepted.
			ok := true
			for _, v := range vals {
				if !(key == "_contained" && v == "false" || key == "_containedType" && v == "container") {
					ok = false
				}
			}
			if ok {
				for _, v := range vals {
					recognised(key, v)
				}
				continue
			}
			msg := fmt.Sprintf("Parameter %s is not supported", key)
			if strict {
				return nil, unsupportedf("%s", msg)
			}
			ignore(key, msg)
		default:
			for _, v := range vals {
				values += strings.Count(v, ",") + 1
				clauses++
				if clauses > MaxClauses {
					return nil, outcome.New(http.StatusBadRequest, "too-costly",
						"The search has more than %d search parameters (counting repeats)", MaxClauses)
				}
				if values > MaxValues {
					return nil, outcome.New(http.StatusBadRequest, "too-costly",
						"The search has more than %d parameter values (counting each comma-separated value)", MaxValues)
				}
				cl, err := p.parseParam(sc, key, v, true, true)
				if err != nil {
					var ie *ignoreError
					if errors.As(err, &ie) {
						if strict {
							return nil, unsupportedf("%s", ie.msg)
						}
						ignore(key, ie.msg)
						break
					}
					return nil, err
				}
				q.Where = append(q.Where, cl)
				costs[key] += ClauseCost(cl)
				recognised(key, v)
			}
		}
	}
	if len(q.Sort) > 0 {
		costs["_sort"] = len(q.Sort) * costSort
	}
	if n := includesCost(q.Include); n > 0 {
		costs["_include"] = n
	}
	if n := includesCost(q.RevInclude); n > 0 {
		costs["_revinclude"] = n
	}
	if total := Cost(q); total > MaxCost {
		worst, worstCost := "", 0
		for k, c := range costs {
			if c > worstCost || c == worstCost && k < worst {
				worst, worstCost = k, c
			}
		}
		return nil, tooCostly(total, worst, worstCost)
	}
	if req.Summary == "count" {
		q.Count = 0
	}
	for k := range req.Canonical {
		sort.Strings(req.Canonical[k])
	}
	return req, nil
}

// lookup finds the search parameter code applicable to every type of the
// scope. For several types the parameter must exist with the same type on
// each; reference targets are merged.
func (p *Parser) lookup(sc scope, code string) *definitions.SearchParam {
	switch len(sc.types) {
	case 0:
		return p.common[code]
	case 1:
		return p.reg.SearchParam(sc.types[0], code)
	}
	first := p.reg.SearchParam(sc.types[0], code)
	if first == nil {
		return nil
	}
	merged := *first
	merged.Targets = append([]string(nil), first.Targets...)
	for _, t := range sc.types[1:] {
		o := p.reg.SearchParam(t, code)
		if o == nil || o.Type != first.Type || o.Expression == "" {
			return nil
		}
		for _, tt := range o.Targets {
			if !contains(merged.Targets, tt) {
				merged.Targets = append(merged.Targets, tt)
			}
		}
	}
	return &merged
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// anyTarget reports whether a reference parameter may point at any type.
func anyTarget(targets []string) bool {
	return len(targets) == 0 || contains(targets, "Resource") || contains(targets, "Any")
}

// supported reports whether the server can search on sp: it must have an
// expression (to be indexed) and a supported type.
func (p *Parser) supported(sp *definitions.SearchParam) bool {
	if sp.Expression == "" {
		return false
	}
	switch sp.Type {
	case "string", "token", "reference", "date", "number", "quantity", "uri":
		return true
	case "composite":
		if len(sp.Components) == 0 {
			return false
		}
		for _, c := range sp.Components {
			switch c.Type {
			case "string", "token", "reference", "date", "number", "quantity", "uri":
			default:
				return false
			}
		}
		return true
	}
	return false
}

// parseParam parses one occurrence key=value of a search parameter
// (possibly chained or a reverse chain) into a Clause.
func (p *Parser) parseParam(sc scope, key, value string, allowChain, allowHas bool) (store.Clause, error) {
	if key == "_has" || strings.HasPrefix(key, "_has:") {
		if !allowHas {
			return store.Clause{}, unsupportedf("Nested or chained _has is not supported (parameter %q)", key)
		}
		return p.parseHas(sc, key, value)
	}
	if i := strings.IndexByte(key, '.'); i >= 0 {
		if !allowChain {
			return store.Clause{}, unsupportedf("Only one level of chaining is supported (parameter %q)", key)
		}
		return p.parseChain(sc, key, key[:i], key[i+1:], value)
	}
	name, mod, hasMod := strings.Cut(key, ":")
	if hasMod && mod == "" {
		return store.Clause{}, badf("Invalid parameter %q: empty modifier", key)
	}
	sp := p.lookup(sc, name)
	if sp == nil {
		return store.Clause{}, ignoref("Unknown search parameter %q for %s", name, sc)
	}
	if !p.supported(sp) {
		return store.Clause{}, ignoref("Search parameter %q is not supported", name)
	}
	return p.parseValues(sp, key, mod, value)
}

// parseChain parses ref[:Type].param[:modifier]=value.
func (p *Parser) parseChain(sc scope, key, left, right, value string) (store.Clause, error) {
	if strings.Contains(right, ".") {
		return store.Clause{}, unsupportedf("Only one level of chaining is supported (parameter %q)", key)
	}
	if right == "" {
		return store.Clause{}, badf("Invalid chained parameter %q: missing the chained parameter name", key)
	}
	if right == "_has" || strings.HasPrefix(right, "_has:") {
		return store.Clause{}, unsupportedf("_has inside a chain is not supported (parameter %q)", key)
	}
	refName, typeMod, hasMod := strings.Cut(left, ":")
	sp := p.lookup(sc, refName)
	if sp == nil {
		return store.Clause{}, ignoref("Unknown search parameter %q for %s", refName, sc)
	}
	if sp.Type != "reference" {
		return store.Clause{}, badf("Invalid chained parameter %q: %s is not a reference parameter", key, refName)
	}
	if !p.supported(sp) {
		return store.Clause{}, ignoref("Search parameter %q is not supported", refName)
	}
	chainedName, _, _ := strings.Cut(right, ":")
	var target string
	if hasMod {
		if !p.reg.IsResourceType(typeMod) {
			return store.Clause{}, badf("Invalid chained parameter %q: %q is not a resource type", key, typeMod)
		}
		if !anyTarget(sp.Targets) && !contains(sp.Targets, typeMod) {
			return store.Clause{}, badf("Invalid chained parameter %q: %s cannot refer to %s", key, refName, typeMod)
		}
		target = typeMod
	} else {
		if anyTarget(sp.Targets) {
			return store.Clause{}, badf("Chained parameter %q is ambiguous: %s may refer to any resource type; specify one, e.g. %s:Patient.%s", key, refName, refName, right)
		}
		var cands []string
		for _, t := range sp.Targets {
			if p.reg.SearchParam(t, chainedName) != nil {
				cands = append(cands, t)
			}
		}
		switch len(cands) {
		case 0:
			return store.Clause{}, ignoref("Unknown search parameter %q for the targets of %s (%s)", chainedName, refName, strings.Join(sp.Targets, ", "))
		case 1:
			target = cands[0]
		default:
			sort.Strings(cands)
			list := strings.Join(cands, ", ")
			if len(cands) > 6 {
				list = strings.Join(cands[:6], ", ") + fmt.Sprintf(" and %d more types", len(cands)-6)
			}
			return store.Clause{}, badf("Chained parameter %q is ambiguous: %s may refer to %s; specify the type, e.g. %s:%s.%s", key, refName, list, refName, cands[0], right)
		}
	}
	inner, err := p.parseParam(scope{types: []string{target}}, right, value, false, false)
	if err != nil {
		return store.Clause{}, err
	}
	return store.Clause{Any: []store.Predicate{{
		Param: refName,
		Chain: &store.Chain{TargetType: target, Where: inner},
	}}}, nil
}

// parseHas parses _has:Type:refParam:param[:modifier]=value.
func (p *Parser) parseHas(sc scope, key, value string) (store.Clause, error) {
	parts := strings.SplitN(key, ":", 4)
	if len(parts) < 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return store.Clause{}, badf("Invalid parameter %q: expected _has:Type:referenceParameter:parameter", key)
	}
	typ, refName, rest := parts[1], parts[2], parts[3]
	if !p.reg.IsResourceType(typ) {
		return store.Clause{}, badf("Invalid parameter %q: %q is not a resource type", key, typ)
	}
	if rest == "_has" || strings.HasPrefix(rest, "_has:") {
		return store.Clause{}, unsupportedf("Nested _has is not supported (parameter %q)", key)
	}
	if strings.Contains(rest, ".") {
		return store.Clause{}, unsupportedf("Chained parameters inside _has are not supported (parameter %q)", key)
	}
	ref := p.reg.SearchParam(typ, refName)
	if ref == nil {
		return store.Clause{}, ignoref("Unknown search parameter %q for %s (in %q)", refName, typ, key)
	}
	if ref.Type != "reference" {
		return store.Clause{}, badf("Invalid parameter %q: %s is not a reference parameter of %s", key, refName, typ)
	}
	if !p.supported(ref) {
		return store.Clause{}, ignoref("Search parameter %q is not supported", refName)
	}
	if !anyTarget(ref.Targets) {
		for _, t := range sc.types {
			if !contains(ref.Targets, t) {
				return store.Clause{}, badf("Invalid parameter %q: %s.%s cannot refer to %s", key, typ, refName, t)
			}
		}
	}
	inner, err := p.parseParam(scope{types: []string{typ}}, rest, value, false, false)
	if err != nil {
		return store.Clause{}, err
	}
	return store.Clause{Any: []store.Predicate{{
		Param: "_has",
		Has:   &store.Has{Type: typ, RefParam: refName, Where: inner},
	}}}, nil
}

// parseValues parses the comma-separated values of one parameter.
func (p *Parser) parseValues(sp *definitions.SearchParam, key, mod, value string) (store.Clause, error) {
	var cl store.Clause
	if value == "" {
		return cl, badf("Empty value for search parameter %q", key)
	}
	pieces := splitEscaped(value, ',')
	if mod == "missing" {
		if sp.Code == "_id" || sp.Code == "_lastUpdated" {
			return cl, unsupportedf("Modifier :missing is not supported on %s", sp.Code)
		}
		for _, v := range pieces {
			var b bool
			switch v {
			case "true":
				b = true
			case "false":
			default:
				return cl, badf("Invalid value %q for %q: expected true or false", v, key)
			}
			param := sp.Code
			if sp.Type == "composite" {
				// Composite values are indexed per component
				// ("<code>$<n>"); every composite value has a first
				// component row.
				param += "$1"
			}
			cl.Any = append(cl.Any, store.Predicate{Param: param, Missing: &b})
		}
		return cl, nil
	}
	if err := checkModifier(sp, key, mod, p.reg); err != nil {
		return cl, err
	}
	if mod == "not" {
		cl.Negate = true
	}
	for _, v := range pieces {
		if v == "" {
			return cl, badf("Empty value in %q for search parameter %q", value, key)
		}
		pr, err := p.parseValue(sp, sp.Code, key, sp.Type, mod, v)
		if err != nil {
			return cl, err
		}
		cl.Any = append(cl.Any, pr)
	}
	return cl, nil
}

// checkModifier validates a modifier against the parameter type.
func checkModifier(sp *definitions.SearchParam, key, mod string, reg *definitions.Registry) error {
	if mod == "" {
		return nil
	}
	switch sp.Type {
	case "string":
		switch mod {
		case "exact", "contains":
			return nil
		}
	case "token":
		switch mod {
		case "not":
			return nil
		case "text", "of-type":
			if sp.Code == "_id" {
				return badf("Modifier :%s is not allowed on _id", mod)
			}
			if mod == "of-type" && !strings.Contains(sp.Expression, "dentifier") {
				return badf("Modifier :of-type is only allowed on identifier parameters (parameter %q)", key)
			}
			return nil
		case "in", "not-in", "above", "below":
			return unsupportedf("Modifier :%s is not supported (parameter %q)", mod, key)
		}
	case "reference":
		switch mod {
		case "below":
			return nil
		case "identifier", "above":
			return unsupportedf("Modifier :%s is not supported (parameter %q)", mod, key)
		}
		if reg.IsResourceType(mod) {
			if !anyTarget(sp.Targets) && !contains(sp.Targets, mod) {
				return badf("Invalid modifier in %q: %s cannot refer to %s", key, sp.Code, mod)
			}
			return nil
		}
	case "uri":
		switch mod {
		case "below", "above":
			return nil
		}
	}
	switch mod {
	case "exact", "contains", "not", "text", "of-type", "in", "not-in", "above", "below", "identifier", "type":
		return badf("Modifier :%s is not allowed on %s parameter %q", mod, sp.Type, sp.Code)
	}
	return badf("Unknown modifier :%s on search parameter %q", mod, sp.Code)
}

// parseValue parses one (OR) value v of a parameter of type typ. param is
// the predicate's Param (the component code for composites).
func (p *Parser) parseValue(sp *definitions.SearchParam, param, key, typ, mod, v string) (store.Predicate, error) {
	pr := store.Predicate{Param: param}
	bad := func(why string) error {
		return badf("Invalid value %q for search parameter %q: %s", unescape(v), key, why)
	}
	switch typ {
	case "string":
		s := unescape(v)
		sm := &store.StringMatch{Mode: store.StringPrefix}
		switch mod {
		case "exact":
			sm.Mode = store.StringExact
			sm.Value = s
		case "contains":
			sm.Mode = store.StringContains
			sm.Value = store.NormalizeString(s)
		default:
			sm.Value = store.NormalizeString(s)
		}
		if sm.Value == "" {
			return pr, bad("empty string")
		}
		pr.String = sm
	case "token":
		if param == "_id" {
			id := unescape(v)
			pr.ID = &id
			return pr, nil
		}
		tm := &store.TokenMatch{}
		switch mod {
		case "text":
			tm.Text = true
			tm.Code = store.NormalizeString(unescape(v))
			if tm.Code == "" {
				return pr, bad("empty text")
			}
		case "of-type":
			parts := splitEscaped(v, '|')
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return pr, bad("expected system|code|value for :of-type")
			}
			sys := unescape(parts[0])
			tm.OfType = true
			tm.System = &sys
			tm.Code = unescape(parts[1])
			tm.Value = unescape(parts[2])
		default:
			parts := splitEscaped(v, '|')
			switch len(parts) {
			case 1:
				tm.Code = unescape(parts[0])
			case 2:
				if parts[0] == "" && parts[1] == "" {
					return pr, bad("expected code, system|code, |code or system|")
				}
				sys := unescape(parts[0])
				tm.System = &sys
				tm.Code = unescape(parts[1])
			default:
				return pr, bad("too many '|' separators (escape a literal '|' as '\\|')")
			}
		}
		pr.Token = tm
	case "reference":
		rm, err := p.parseReference(sp, key, mod, v)
		if err != nil {
			return pr, err
		}
		pr.Reference = rm
	case "date":
		pfx, rest, ok := splitPrefix(v)
		if !ok {
			return pr, bad("unknown prefix " + strconv.Quote(v[:2]) + " (expected eq, ne, gt, lt, ge, le, sa, eb or ap)")
		}
		rm, ok := parseDate(pfx, rest, p.now())
		if !ok {
			return pr, bad("not a valid date (expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm], optionally with a prefix)")
		}
		if param == "_lastUpdated" {
			pr.LastUpdated = &rm
		} else {
			pr.Date = &rm
		}
	case "number":
		pfx, rest, ok := splitPrefix(v)
		if !ok {
			return pr, bad("unknown prefix " + strconv.Quote(v[:2]) + " (expected eq, ne, gt, lt, ge, le, sa, eb or ap)")
		}
		n, lo, hi, ok := parseNumber(rest)
		if !ok {
			return pr, bad("not a number")
		}
		rm := numberRange(pfx, n, lo, hi)
		pr.Number = &rm
	case "quantity":
		parts := splitEscaped(v, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return pr, bad("expected [prefix]number, [prefix]number|system|code or [prefix]number||code")
		}
		pfx, rest, ok := splitPrefix(parts[0])
		if !ok {
			return pr, bad("unknown prefix " + strconv.Quote(parts[0][:2]) + " (expected eq, ne, gt, lt, ge, le, sa, eb or ap)")
		}
		n, lo, hi, ok := parseNumber(rest)
		if !ok {
			return pr, bad("not a number")
		}
		qm := &store.QuantityMatch{Range: numberRange(pfx, n, lo, hi)}
		if len(parts) == 3 {
			qm.System = unescape(parts[1])
			qm.Code = unescape(parts[2])
			if qm.System != "" && qm.Code == "" {
				return pr, bad("a unit system requires a code")
			}
		}
		pr.Quantity = qm
	case "uri":
		u := unescape(v)
		pr.URI = &store.URIMatch{Value: u, Below: mod == "below", Above: mod == "above"}
	case "composite":
		parts := splitEscaped(v, '$')
		if len(parts) != len(sp.Components) {
			return pr, bad(fmt.Sprintf("expected %d components separated by '$'", len(sp.Components)))
		}
		for i, c := range sp.Components {
			if parts[i] == "" {
				return pr, bad(fmt.Sprintf("component %d is empty", i+1))
			}
			cp := p.reg.SearchParam(firstBase(sp), c.Definition)
			if cp == nil {
				cp = &definitions.SearchParam{Code: c.Definition, Type: c.Type}
			}
			sub, err := p.parseValue(cp, sp.Code+"$"+strconv.Itoa(i+1), key, c.Type, "", parts[i])
			if err != nil {
				return pr, err
			}
			pr.Composite = append(pr.Composite, sub)
		}
	default:
		return pr, unsupportedf("Search parameter %q of type %s is not supported", sp.Code, typ)
	}
	return pr, nil
}

// firstBase is the resource type a composite's components are looked up
// on (their targets matter only for reference components).
func firstBase(sp *definitions.SearchParam) string {
	if len(sp.Base) > 0 {
		return sp.Base[0]
	}
	return ""
}

// parseReference parses one reference value.
func (p *Parser) parseReference(sp *definitions.SearchParam, key, mod, v string) (*store.ReferenceMatch, error) {
	parts := splitEscaped(v, '|')
	if len(parts) > 2 {
		return nil, badf("Invalid value %q for search parameter %q: too many '|' separators", unescape(v), key)
	}
	val := unescape(parts[0])
	bad := func(why string) error {
		return badf("Invalid value %q for search parameter %q: %s", unescape(v), key, why)
	}
	if val == "" {
		return nil, bad("empty reference")
	}
	if len(parts) == 2 && !isAbsolute(val) {
		return nil, bad("a |version suffix is only allowed on canonical URLs")
	}
	typeMod := ""
	if mod != "" && mod != "below" {
		typeMod = mod
	}
	rm := &store.ReferenceMatch{}
	rel := val
	if isAbsolute(val) {
		if p.base != "" && strings.HasPrefix(val, p.base+"/") && len(parts) == 1 {
			rel = val[len(p.base)+1:]
		} else {
			if typeMod != "" {
				return nil, bad("a type modifier cannot be combined with an absolute URL")
			}
			rm.URL = val
			rm.Below = mod == "below"
			return rm, nil
		}
	}
	if mod == "below" {
		return nil, bad(":below requires an absolute (canonical) URL")
	}
	segs := strings.Split(rel, "/")
	switch {
	case len(segs) == 1:
		rm.TargetID = segs[0]
		rm.TargetType = typeMod
		if rm.TargetType == "" && len(sp.Targets) == 1 && !anyTarget(sp.Targets) {
			rm.TargetType = sp.Targets[0]
		}
	case len(segs) == 2 || len(segs) == 4 && segs[2] == "_history" && segs[3] != "":
		if !p.reg.IsResourceType(segs[0]) {
			return nil, bad(strconv.Quote(segs[0]) + " is not a resource type")
		}
		if typeMod != "" && typeMod != segs[0] {
			return nil, bad("the reference type does not match the modifier :" + typeMod)
		}
		if !anyTarget(sp.Targets) && !contains(sp.Targets, segs[0]) {
			return nil, bad(sp.Code + " cannot refer to " + segs[0])
		}
		rm.TargetType, rm.TargetID = segs[0], segs[1]
	default:
		return nil, bad("expected id, Type/id or an absolute URL")
	}
	if rm.TargetID == "" {
		return nil, bad("empty resource id")
	}
	return rm, nil
}

// parseSort parses the _sort value.
func (p *Parser) parseSort(sc scope, v string, desc bool) ([]store.SortKey, error) {
	var keys []store.SortKey
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		k := store.SortKey{Desc: desc}
		if strings.HasPrefix(f, "-") {
			f = f[1:]
			k.Desc = !desc
		}
		if f == "" {
			return nil, badf("Invalid value %q for parameter _sort: empty sort key", v)
		}
		sp := p.lookup(sc, f)
		if sp == nil {
			return nil, badf("Invalid value %q for parameter _sort: unknown search parameter %q for %s", v, f, sc)
		}
		if !p.supported(sp) || sp.Type == "composite" {
			return nil, unsupportedf("Sorting by %q is not supported", f)
		}
		if seen[f] {
			return nil, badf("Invalid value %q for parameter _sort: %q appears twice", v, f)
		}
		seen[f] = true
		k.Param, k.Type = f, sp.Type
		keys = append(keys, k)
	}
	return keys, nil
}

// parseInclude parses an _include or _revinclude value:
// Source:param[:Target] or "*".
func (p *Parser) parseInclude(sc scope, name, v string, iterate bool) (store.Include, error) {
	inc := store.Include{Iterate: iterate}
	bad := func(why string) error {
		return badf("Invalid value %q for parameter %s: %s", v, name, why)
	}
	if v == "*" {
		if name == "_revinclude" {
			return inc, unsupportedf("_revinclude=* is not supported")
		}
		if len(sc.types) != 1 {
			return inc, bad("* requires a single resource type; use Type:*")
		}
		inc.SourceType, inc.Param = sc.types[0], "*"
		return inc, nil
	}
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return inc, bad("expected SourceType:searchParameter[:TargetType]")
	}
	src, param := parts[0], parts[1]
	if !p.reg.IsResourceType(src) {
		return inc, bad(strconv.Quote(src) + " is not a resource type")
	}
	if name == "_include" && !iterate && len(sc.types) > 0 && !contains(sc.types, src) {
		return inc, bad("the source type must be the searched type (" + sc.String() + ") unless :iterate is used")
	}
	inc.SourceType, inc.Param = src, param
	var sp *definitions.SearchParam
	if param == "*" {
		if len(parts) == 3 {
			return inc, bad("a target type cannot be combined with *")
		}
		return inc, nil
	}
	sp = p.reg.SearchParam(src, param)
	if sp == nil || sp.Type != "reference" {
		return inc, bad(strconv.Quote(param) + " is not a reference search parameter of " + src)
	}
	if !p.supported(sp) {
		return inc, unsupportedf("Search parameter %q of %s is not supported for %s", param, src, name)
	}
	if len(parts) == 3 {
		t := parts[2]
		if !p.reg.IsResourceType(t) {
			return inc, bad(strconv.Quote(t) + " is not a resource type")
		}
		if !anyTarget(sp.Targets) && !contains(sp.Targets, t) {
			return inc, bad(src + "." + param + " cannot refer to " + t)
		}
		inc.TargetType = t
	}
	if name == "_revinclude" && !iterate && len(sc.types) > 0 && !anyTarget(sp.Targets) {
		ok := false
		for _, t := range sc.types {
			if contains(sp.Targets, t) {
				ok = true
			}
		}
		if !ok {
			return inc, bad(src + "." + param + " cannot refer to " + sc.String())
		}
	}
	return inc, nil
}
