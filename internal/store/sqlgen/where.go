package sqlgen

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/store"
)

// Index tables, in the order of their bit in resources.idx_mask.
const (
	TableString    = "idx_string"
	TableToken     = "idx_token"
	TableReference = "idx_reference"
	TableDate      = "idx_date"
	TableNumber    = "idx_number"
	TableQuantity  = "idx_quantity"
	TableURI       = "idx_uri"
)

// IndexTables lists every index table; the position of a table is its bit
// in resources.idx_mask.
var IndexTables = [...]string{TableString, TableToken, TableReference, TableDate, TableNumber, TableQuantity, TableURI}

// Mask returns the idx_mask bits of the tables that ix has rows for
// (store.Index.Mask).
func Mask(ix *store.Index) int64 { return ix.Mask() }

// scope is the resource row a condition is about.
type scope struct {
	alias string // SQL alias of the resources row
	typ   string // its type when known ("" for several types)
	// corr forces correlated EXISTS subqueries (inside negations, where
	// NOT EXISTS is an anti-join on both databases).
	corr bool
	// array renders an uncorrelated membership as rid = ANY(ARRAY(...)):
	// PostgreSQL computes the rids once and fetches the rows by rid (the
	// clause driving a search; see Engine.base).
	array bool
}

// gen renders conditions into a Builder.
type gen struct {
	b      *Builder
	sqlite bool // prefer correlated probes in nested clauses
	filter *store.AccessFilter
	n      int // alias counter
	// hist renders access rules on a history row from the history access
	// tables (see versions).
	hist bool
}

func (g *gen) alias(p string) string {
	g.n++
	return p + strconv.Itoa(g.n)
}

// member renders "the scoped resource has a row in from (whose alias is x)
// satisfying where".
func (g *gen) member(sc scope, x, from, where string) string {
	if sc.corr || sc.typ == "" {
		return "EXISTS (SELECT 1 FROM " + from + " WHERE " + x + ".rid = " + sc.alias + ".rid AND " + where + ")"
	}
	sub := "SELECT " + x + ".rid FROM " + from + " WHERE " + x + ".type = " + g.b.Arg(sc.typ) + " AND " + where
	if sc.array {
		return g.b.D.ridIn(sc.alias, sub)
	}
	return sc.alias + ".rid IN (" + sub + ")"
}

// where renders the AND of clauses (plus nothing else) for the scope; ""
// when there are none. When driver >= 0 only that clause uses the
// uncorrelated "rid IN (subquery)" form and the others are correlated
// EXISTS probes (see Engine.base).
func (g *gen) where(sc scope, clauses []store.Clause, driver int) (string, error) {
	var parts []string
	for i, c := range clauses {
		csc := sc
		if driver >= 0 && i != driver {
			csc.corr = true
		}
		csc.array = driver >= 0 && i == driver
		s, err := g.clause(csc, c)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "", nil
	}
	return joinTree(parts, " AND "), nil
}

// simpleTable returns the index table of a predicate on one index row kind,
// or "" for other predicates.
func simpleTable(p *store.Predicate) string {
	switch {
	case p.Missing != nil:
		return ""
	case p.String != nil:
		return TableString
	case p.Token != nil:
		return TableToken
	case p.Reference != nil:
		return TableReference
	case p.Date != nil:
		return TableDate
	case p.Number != nil:
		return TableNumber
	case p.Quantity != nil:
		return TableQuantity
	case p.URI != nil:
		return TableURI
	}
	return ""
}

// rowParam is the Param of the index rows a simple predicate reads.
func rowParam(p *store.Predicate) string {
	if p.Token != nil && p.Token.OfType {
		return store.OfTypeParam(p.Param)
	}
	return p.Param
}

// clause renders an OR of predicates, negated when c.Negate. Predicates on
// the same index table and parameter share one subquery.
func (g *gen) clause(sc scope, c store.Clause) (string, error) {
	if len(c.Any) == 0 {
		if c.Negate {
			return "1=1", nil
		}
		return "1=0", nil
	}
	if c.Negate {
		sc.corr = true
	}
	type group struct {
		table, param string
		conds        []string
		x            string
	}
	var groups []*group
	var parts []string
	var idIn []string
	var comps [][]*store.Predicate // composite values, by composite parameter
	for i := range c.Any {
		p := &c.Any[i]
		if len(p.Composite) > 0 {
			sig := compositeSig(p)
			j := slices.IndexFunc(comps, func(cs []*store.Predicate) bool { return compositeSig(cs[0]) == sig })
			if j < 0 {
				comps = append(comps, nil)
				j = len(comps) - 1
			}
			comps[j] = append(comps[j], p)
			continue
		}
		if t := simpleTable(p); t != "" {
			param := rowParam(p)
			var gr *group
			for _, e := range groups {
				if e.table == t && e.param == param {
					gr = e
				}
			}
			if gr == nil {
				gr = &group{table: t, param: param, x: g.alias("x")}
				groups = append(groups, gr)
			}
			cond, err := g.simple(gr.x, p)
			if err != nil {
				return "", err
			}
			gr.conds = append(gr.conds, cond)
			continue
		}
		if p.ID != nil {
			idIn = append(idIn, *p.ID)
			continue
		}
		s, err := g.complex(sc, p)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	if len(idIn) == 1 {
		parts = append(parts, sc.alias+".id = "+g.b.Arg(idIn[0]))
	} else if len(idIn) > 1 {
		parts = append(parts, sc.alias+".id IN "+g.b.List(idIn))
	}
	for _, gr := range groups {
		cond := gr.x + ".param = " + g.b.Arg(gr.param) + " AND " + orTree(gr.conds)
		if g.hist {
			parts = append(parts, g.histMember(sc, gr.table, gr.x, cond))
			continue
		}
		parts = append(parts, g.member(sc, gr.x, gr.table+" "+gr.x, cond))
	}
	for _, cs := range comps {
		s, err := g.composite(sc, cs)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	expr := orTree(parts)
	if c.Negate {
		return "NOT (" + expr + ")", nil
	}
	return expr, nil
}

// orTree joins conditions with OR as a balanced tree of parentheses: SQLite
// parses "a OR b OR c ..." into a left-deep tree whose depth grows with the
// number of values and is limited (1000), so hundreds of comma-separated
// values must not become one flat chain.
func orTree(conds []string) string { return joinTree(conds, " OR ") }

// joinTree joins conds with op (" OR ", " AND ") as a balanced tree.
func joinTree(conds []string, op string) string {
	const flat = 16
	switch {
	case len(conds) == 1:
		return conds[0]
	case len(conds) <= flat:
		return "(" + strings.Join(conds, op) + ")"
	}
	// Split into at most flat balanced groups.
	size := (len(conds) + flat - 1) / flat
	var groups []string
	for i := 0; i < len(conds); i += size {
		groups = append(groups, joinTree(conds[i:min(i+size, len(conds))], op))
	}
	return joinTree(groups, op)
}

// complex renders predicates that are not a test on one index row.
func (g *gen) complex(sc scope, p *store.Predicate) (string, error) {
	switch {
	case p.Missing != nil:
		return g.missing(sc, p.Param, *p.Missing), nil
	case p.LastUpdated != nil:
		col := sc.alias + ".last_updated"
		return g.rangeCond(col, col, p.LastUpdated, true), nil
	case p.Chain != nil:
		return g.chain(sc, p)
	case p.Has != nil:
		return g.has(sc, p.Has)
	}
	return "", fmt.Errorf("sqlgen: predicate on %q has no match", p.Param)
}

// missing renders :missing: whether the resource has any index row for param.
func (g *gen) missing(sc scope, param string, missing bool) string {
	switch param {
	case "_id", "_lastUpdated":
		if missing {
			return "1=0"
		}
		return "1=1"
	}
	// A composite parameter has rows only under its components' params.
	x := g.alias("m")
	ph := "(" + x + ".param = " + g.b.Arg(param) + " OR " + x + ".param = " + g.b.Arg(param+"$1") + ")"
	var sb strings.Builder
	sb.WriteString("EXISTS (")
	for i, t := range IndexTables {
		if i > 0 {
			sb.WriteString(" UNION ALL ")
		}
		sb.WriteString("SELECT 1 FROM " + t + " " + x + " WHERE " + x + ".rid = " + sc.alias + ".rid AND " + ph)
	}
	sb.WriteString(")")
	if missing {
		return "NOT " + sb.String()
	}
	return sb.String()
}

// simple renders the condition of a one-row predicate on alias x.
func (g *gen) simple(x string, p *store.Predicate) (string, error) {
	switch {
	case p.String != nil:
		m := p.String
		switch m.Mode {
		case store.StringExact:
			return x + ".norm = " + g.b.Arg(store.NormalizeString(m.Value)) + " AND " + x + ".exact = " + g.b.Arg(m.Value), nil
		case store.StringContains:
			return g.b.D.Contains(x+".norm", g.b.Text(m.Value)), nil
		default:
			return g.prefix(x+".norm", m.Value), nil
		}
	case p.Token != nil:
		return g.token(x, p.Token), nil
	case p.Reference != nil:
		m := p.Reference
		if m.URL != "" {
			if m.Below {
				return g.prefix(x+".url", m.URL), nil
			}
			return x + ".url = " + g.b.Arg(m.URL), nil
		}
		var c []string
		if m.TargetID != "" {
			c = append(c, x+".target_id = "+g.b.Arg(m.TargetID))
		}
		if m.TargetType != "" {
			c = append(c, x+".target_type = "+g.b.Arg(m.TargetType))
		}
		if len(c) == 0 {
			return "1=1", nil
		}
		return strings.Join(c, " AND "), nil
	case p.Date != nil:
		return g.rangeCond(x+".lo", x+".hi", p.Date, true), nil
	case p.Number != nil:
		return g.rangeCond(x+".lo", x+".hi", p.Number, false), nil
	case p.Quantity != nil:
		m := p.Quantity
		c := g.rangeCond(x+".lo", x+".hi", &m.Range, false)
		switch {
		case m.System != "" && m.Code != "":
			c += " AND " + x + ".system = " + g.b.Arg(m.System) + " AND " + x + ".code = " + g.b.Arg(m.Code)
		case m.System != "":
			c += " AND " + x + ".system = " + g.b.Arg(m.System)
		case m.Code != "":
			ph := g.b.Arg(m.Code)
			c += " AND (" + x + ".code = " + ph + " OR " + x + ".unit = " + ph + ")"
		}
		return c, nil
	case p.URI != nil:
		m := p.URI
		switch {
		case m.Below:
			return g.prefix(x+".uri", m.Value), nil
		case m.Above:
			return x + ".uri = substr(" + g.b.Text(m.Value) + ", 1, length(" + x + ".uri))", nil
		default:
			return x + ".uri = " + g.b.Arg(m.Value), nil
		}
	}
	return "", fmt.Errorf("sqlgen: predicate on %q is not a one-row predicate", p.Param)
}

// prefix renders "col starts with v" as an index-friendly byte-order range.
func (g *gen) prefix(col, v string) string {
	if v == "" {
		return "1=1"
	}
	return col + " >= " + g.b.Arg(v) + " AND " + col + " < " + g.b.Arg(v+prefixUpper)
}

func (g *gen) token(x string, m *store.TokenMatch) string {
	if m.Text {
		return g.prefix(x+".text", m.Code)
	}
	if m.OfType {
		c := x + ".code = " + g.b.Arg(store.OfTypeCode(m.Code, m.Value))
		if m.System != nil {
			c += " AND " + x + ".system = " + g.b.Arg(*m.System)
		}
		return c
	}
	switch {
	case m.System == nil:
		return x + ".code = " + g.b.Arg(m.Code)
	case m.Code == "":
		return x + ".system = " + g.b.Arg(*m.System)
	default:
		return x + ".code = " + g.b.Arg(m.Code) + " AND " + x + ".system = " + g.b.Arg(*m.System)
	}
}

// rangeArg converts a range bound for binding: dates are int64 milliseconds.
func rangeArg(v float64, isInt bool) any {
	if !isInt {
		return v
	}
	switch {
	case math.IsInf(v, -1) || v < float64(math.MinInt64):
		return int64(math.MinInt64)
	case math.IsInf(v, 1) || v > float64(math.MaxInt64/2):
		return int64(math.MaxInt64)
	}
	return int64(math.Floor(v))
}

// rangeCond renders the RangeMatch semantics documented in package store.
func (g *gen) rangeCond(lo, hi string, m *store.RangeMatch, isInt bool) string {
	L := func() string { return g.b.Arg(rangeArg(m.Lo, isInt)) }
	H := func() string { return g.b.Arg(rangeArg(m.Hi, isInt)) }
	switch m.Prefix {
	case store.PrefixNe:
		return "NOT (" + lo + " >= " + L() + " AND " + hi + " <= " + H() + ")"
	case store.PrefixGt:
		return hi + " > " + H()
	case store.PrefixLt:
		return lo + " < " + L()
	case store.PrefixGe:
		return hi + " >= " + L()
	case store.PrefixLe:
		return lo + " <= " + H()
	case store.PrefixSa:
		return lo + " > " + H()
	case store.PrefixEb:
		return hi + " < " + L()
	case store.PrefixAp:
		return lo + " <= " + g.b.Arg(rangeArg(m.ApHi, isInt)) + " AND " + hi + " >= " + g.b.Arg(rangeArg(m.ApLo, isInt))
	default:
		return lo + " >= " + L() + " AND " + hi + " <= " + H()
	}
}

// chain renders a forward chain: a reference row of the scoped resource
// points at a visible resource of Chain.TargetType satisfying Chain.Where.
// Where the chain selects the scoped rows (an uncorrelated test on a known
// type) it is driven from the target side, whatever the statistics: the
// matching targets first (through their own index rows), then the rows
// referencing them through the reference target index. Elsewhere (a probe
// per candidate) it follows the candidate's own references.
func (g *gen) chain(sc scope, p *store.Predicate) (string, error) {
	if !sc.corr && sc.typ != "" && p.Chain.TargetType != "" {
		return g.chainFromTargets(sc, p)
	}
	x, t := g.alias("c"), g.alias("t")
	inner, err := g.clause(scope{alias: t, typ: p.Chain.TargetType, corr: g.sqlite}, p.Chain.Where)
	if err != nil {
		return "", err
	}
	from := TableReference + " " + x + " JOIN resources " + t + " ON " + t + ".type = " + x + ".target_type AND " + t + ".id = " + x + ".target_id"
	w := x + ".param = " + g.b.Arg(p.Param)
	if p.Chain.TargetType != "" {
		w += " AND " + x + ".target_type = " + g.b.Arg(p.Chain.TargetType)
	}
	w += " AND NOT " + t + ".deleted AND " + inner
	if f := g.access(t, p.Chain.TargetType); f != "" {
		w += " AND " + f
	}
	return g.member(sc, x, from, w), nil
}

// chainFromTargets renders a chain that selects the scoped rows, driven
// from the target side (see chain). SQLite keeps the order of a CROSS JOIN
// and is told the index; PostgreSQL evaluates the rids once (an ARRAY
// subquery is an init plan) from a fenced target query, with a LATERAL
// probe of the reference target index per target.
func (g *gen) chainFromTargets(sc scope, p *store.Predicate) (string, error) {
	t, x := g.alias("t"), g.alias("c")
	targets, err := g.visible(t, p.Chain.TargetType, p.Chain.Where)
	if err != nil {
		return "", err
	}
	if g.b.D == SQLite {
		ref := x + ".type = " + g.b.Arg(sc.typ) + " AND " + x + ".param = " + g.b.Arg(p.Param)
		return sc.alias + ".rid IN (SELECT " + x + ".rid FROM resources " + t + " CROSS JOIN " + TableReference + " " + x +
			" INDEXED BY idx_reference_target WHERE " + targets + " AND " + x + ".target_id = " + t + ".id AND " + ref +
			" AND " + x + ".target_type = " + t + ".type)", nil
	}
	// The source type is compared as an expression no index holds
	// ("|| ''"), so that only the target index can serve the probe: the
	// url index, which starts with (type, param), would read every
	// reference of the source type and parameter, and stale statistics
	// (a database analyzed while it held one patient) rate it as cheap.
	tv := t + "v"
	ref := x + ".param = " + g.b.Arg(p.Param) + " AND " + x + ".type || '' = " + g.b.Arg(sc.typ)
	return sc.alias + ".rid = ANY(ARRAY(SELECT " + x + ".rid FROM (SELECT " + t + ".id, " + t + ".type FROM resources " + t +
		" WHERE " + targets + " OFFSET 0) " + tv + " CROSS JOIN LATERAL (SELECT " + x + ".rid FROM " + TableReference + " " + x +
		" WHERE " + x + ".target_id = " + tv + ".id AND " + x + ".target_type = " + tv + ".type AND " + ref + " OFFSET 0) " + x + "))", nil
}

// visible renders the conditions on resources row alias that make it a
// visible, current resource of typ satisfying where, with where driving
// the row's lookup when it can (its index rows first, then the row by rid:
// the type index is kept out of the way unless where tests _id).
func (g *gen) visible(alias, typ string, where store.Clause) (string, error) {
	typeCol, corr := alias+".type", rank(where) == rankNone
	if !corr && !hasID(where) {
		typeCol = g.b.D.unindexed(typeCol)
	}
	inner, err := g.clause(scope{alias: alias, typ: typ, corr: corr}, where)
	if err != nil {
		return "", err
	}
	conds := typeCol + " = " + g.b.Arg(typ) + " AND NOT " + alias + ".deleted AND " + inner
	if f := g.access(alias, typ); f != "" {
		conds += " AND " + f
	}
	return conds, nil
}

// has renders a reverse chain: a visible resource of Has.Type satisfying
// Has.Where references the scoped resource through Has.RefParam. Where it
// selects the scoped rows (an uncorrelated test on a known type) it is
// driven from the referencing side, whatever the statistics: the matching
// resources of Has.Type first, then their references by rid, then the
// referenced rows by (type, id).
func (g *gen) has(sc scope, h *store.Has) (string, error) {
	if !sc.corr && sc.typ != "" {
		return g.hasFromSources(sc, h)
	}
	x, hr := g.alias("h"), g.alias("hr")
	inner, err := g.clause(scope{alias: hr, typ: h.Type, corr: g.sqlite}, h.Where)
	if err != nil {
		return "", err
	}
	from := TableReference + " " + x + " JOIN resources " + hr + " ON " + hr + ".rid = " + x + ".rid"
	w := x + ".type = " + g.b.Arg(h.Type) + " AND " + x + ".param = " + g.b.Arg(h.RefParam) +
		" AND NOT " + hr + ".deleted AND " + inner
	if f := g.access(hr, h.Type); f != "" {
		w += " AND " + f
	}
	return "EXISTS (SELECT 1 FROM " + from + " WHERE " + x + ".target_type = " + sc.alias + ".type AND " +
		x + ".target_id = " + sc.alias + ".id AND " + w + ")", nil
}

// hasFromSources renders a _has that selects the scoped rows, driven from
// the referencing side (see has), in the forms chainFromTargets uses.
func (g *gen) hasFromSources(sc scope, h *store.Has) (string, error) {
	if s, ok, err := g.hasFromIndexRows(sc, h); ok || err != nil {
		return s, err
	}
	hr, x, e := g.alias("hr"), g.alias("h"), g.alias("e")
	sources, err := g.visible(hr, h.Type, h.Where)
	if err != nil {
		return "", err
	}
	ref := x + ".param = " + g.b.Arg(h.RefParam) + " AND " + x + ".target_type = " + g.b.Arg(sc.typ)
	if g.b.D == SQLite {
		live := "" // the sources by rid, from the index that covers the test
		if rank(h.Where) != rankNone && !hasID(h.Where) {
			live = " INDEXED BY resources_live"
		}
		return sc.alias + ".rid IN (SELECT " + e + ".rid FROM resources " + hr + live + " CROSS JOIN " + TableReference + " " + x +
			" INDEXED BY idx_reference_rid CROSS JOIN resources " + e + " INDEXED BY resources_type_id WHERE " + sources +
			" AND " + x + ".rid = " + hr + ".rid AND " + ref + " AND " + e + ".type = " + x + ".target_type AND " + e + ".id = " + x + ".target_id)", nil
	}
	hv := hr + "v"
	return sc.alias + ".rid = ANY(ARRAY(SELECT " + e + ".rid FROM (SELECT " + hr + ".rid FROM resources " + hr + " WHERE " + sources +
		" OFFSET 0) " + hv + " CROSS JOIN LATERAL (SELECT " + x + ".target_type, " + x + ".target_id FROM " + TableReference + " " + x +
		" WHERE " + x + ".rid = " + hv + ".rid AND " + ref + " OFFSET 0) " + x + " CROSS JOIN LATERAL (SELECT " + e + ".rid FROM resources " + e +
		" WHERE " + e + ".type = " + x + ".target_type AND " + e + ".id = " + x + ".target_id OFFSET 0) " + e + "))", nil
}

// hasFromIndexRows renders hasFromSources without reading the sources'
// resources rows, where they add nothing: Has.Where tests the rows of one
// parameter in one index table, and every resource of Has.Type is visible.
// Index rows exist only for the current version of a resource that is not
// deleted (a new version replaces them, a deletion drops them), and carry
// its type, so the matching rows' rids are the sources. ok is false when
// the _has is not of that kind.
func (g *gen) hasFromIndexRows(sc scope, h *store.Has) (string, bool, error) {
	table, k, sources, ok, err := g.hasIndexSources(h)
	if !ok || err != nil {
		return "", ok, err
	}
	x, e := g.alias("h"), g.alias("e")
	if g.b.D == SQLite {
		return sc.alias + ".rid IN (SELECT " + e + ".rid FROM " + table + " " + k + " CROSS JOIN " + TableReference + " " + x +
			" INDEXED BY " + refSourceIndex + " CROSS JOIN resources " + e + " INDEXED BY resources_type_id WHERE " + sources +
			" AND " + g.hasRefs(sc.typ, h, x, k) + " AND " + e + ".type = " + x + ".target_type AND " + e + ".id = " + x + ".target_id)", true, nil
	}
	ref := x + ".param = " + g.b.Arg(h.RefParam) + " AND " + x + ".target_type = " + g.b.Arg(sc.typ)
	return sc.alias + ".rid = ANY(ARRAY(SELECT " + e + ".rid FROM " + hasLaterals(table, k, sources, x, ref, e, "") + "))", true, nil
}

// refSourceIndex is SQLite's index of the reference rows by their
// resource's type, parameter and rid (with the target): the references
// one parameter of one type makes, in rid order, apart from every other
// reference. A _has whose sources are many (a common code) reads their
// references there in a few pages each request, where the rid index
// (every reference of every type, by rid) spread them over one page
// each, all read again after any commit (a read transaction that finds
// the database changed drops its connection's page cache).
const refSourceIndex = "idx_reference_src"

// hasRefs renders, for SQLite, the test that a reference row (alias x, of
// refSourceIndex) is one of the source k's that a _has follows to typ.
func (g *gen) hasRefs(typ string, h *store.Has, x, k string) string {
	return x + ".type = " + g.b.Arg(h.Type) + " AND " + x + ".param = " + g.b.Arg(h.RefParam) + " AND " + x + ".rid = " + k + ".rid AND " +
		x + ".target_type = " + g.b.Arg(typ)
}

// hasIndexSources renders the test on index rows (alias k of table) that
// finds the sources of a _has whose Where tests the rows of one parameter
// in one index table, every resource of Has.Type being visible (see
// hasFromIndexRows); ok is false when h is not of that kind.
func (g *gen) hasIndexSources(h *store.Has) (table, k, sources string, ok bool, err error) {
	c := h.Where
	if g.hist || c.Negate || len(c.Any) == 0 {
		return "", "", "", false, nil
	}
	table, param := simpleTable(&c.Any[0]), rowParam(&c.Any[0])
	for i := range c.Any {
		p := &c.Any[i]
		if len(p.Composite) > 0 || table == "" || simpleTable(p) != table || rowParam(p) != param {
			return "", "", "", false, nil
		}
	}
	// Rendered apart, so that a rule is tested without binding its values.
	scratch := &gen{b: &Builder{D: g.b.D}, filter: g.filter, sqlite: g.sqlite}
	if f := scratch.access("hr", h.Type); f != "" && f != "1=1" {
		return "", "", "", false, nil
	}
	k = g.alias("k")
	conds := make([]string, len(c.Any))
	for i := range c.Any {
		if conds[i], err = g.simple(k, &c.Any[i]); err != nil {
			return "", "", "", true, err
		}
	}
	return table, k, k + ".type = " + g.b.Arg(h.Type) + " AND " + k + ".param = " + g.b.Arg(param) + " AND " + orTree(conds), true, nil
}

// hasLaterals renders, for PostgreSQL, the FROM of a _has driven from its
// sources' index rows (k of table, matching sources): the sources' rids
// once, then per source its references (x, matching ref) and per
// reference the referenced row e by (type, id), which must also satisfy
// live ("" or a condition on e), each a fenced LATERAL subquery probed
// through its index.
func hasLaterals(table, k, sources, x, ref, e, live string) string {
	kv := k + "v"
	if live != "" {
		live = " AND " + live
	}
	return "(SELECT DISTINCT " + k + ".rid FROM " + table + " " + k + " WHERE " + sources +
		" OFFSET 0) " + kv + " CROSS JOIN LATERAL (SELECT " + x + ".target_type, " + x + ".target_id FROM " + TableReference + " " + x +
		" WHERE " + x + ".rid = " + kv + ".rid AND " + ref + " OFFSET 0) " + x + " CROSS JOIN LATERAL (SELECT " + e + ".rid FROM resources " + e +
		" WHERE " + e + ".type = " + x + ".target_type AND " + e + ".id = " + x + ".target_id" + live + " OFFSET 0) " + e
}

// hasRows renders the visible resources of typ that a _has selects, as
// the FROM and WHERE of a query whose rows are theirs (alias e, with
// duplicates), where it is of the kind hasFromIndexRows drives from its
// sources' index rows. The referenced row is found, and its deletion
// tested, by (type, id) in one probe (SQLite: the covering index
// resources_type_id_live), so no other probe of the resources rows is
// needed. ok is false when h is not of that kind.
func (g *gen) hasRows(typ string, h *store.Has) (from, where, e string, ok bool, err error) {
	table, k, sources, ok, err := g.hasIndexSources(h)
	if !ok || err != nil {
		return "", "", "", ok, err
	}
	x := g.alias("h")
	e = g.alias("e")
	if g.b.D == SQLite {
		from = table + " " + k + " CROSS JOIN " + TableReference + " " + x + " INDEXED BY " + refSourceIndex + " CROSS JOIN resources " + e +
			" INDEXED BY resources_type_id_live"
		where = sources + " AND " + g.hasRefs(typ, h, x, k) + " AND " + e + ".type = " + x + ".target_type AND " +
			e + ".id = " + x + ".target_id AND NOT " + e + ".deleted"
		return from, where, e, true, nil
	}
	ref := x + ".param = " + g.b.Arg(h.RefParam) + " AND " + x + ".target_type = " + g.b.Arg(typ)
	return hasLaterals(table, k, sources, x, ref, e, "NOT "+e+".deleted"), "", e, true, nil
}

// compositeSig identifies the index rows a composite value is matched on:
// the table and Param of each component. Values of one composite
// parameter share it.
func compositeSig(p *store.Predicate) string {
	var sb strings.Builder
	for i := range p.Composite {
		c := &p.Composite[i]
		sb.WriteString(simpleTable(c) + " " + rowParam(c) + "\x00")
	}
	return sb.String()
}

// composite renders the OR of composite values that share their component
// rows (compositeSig): one subquery joining the components' index rows on
// their Group, whatever the number of values, with the values that share
// a first component (a code, typically) merged under it, so that the
// subquery makes one index probe per distinct first component and tests
// the rest on the rows it finds. (One subquery per value would scan the
// same rows once per value.)
func (g *gen) composite(sc scope, alts []*store.Predicate) (string, error) {
	comps := alts[0].Composite
	xs := make([]string, len(comps))
	var from strings.Builder
	var w []string
	for i := range comps {
		p := &comps[i]
		t := simpleTable(p)
		if t == "" {
			return "", fmt.Errorf("sqlgen: composite component %q is not a one-row predicate", p.Param)
		}
		xs[i] = g.alias("k")
		if i == 0 {
			from.WriteString(t + " " + xs[0])
		} else {
			from.WriteString(" JOIN " + t + " " + xs[i] + " ON " + xs[i] + ".rid = " + xs[0] + ".rid AND " + xs[i] + ".grp = " + xs[0] + ".grp")
		}
		w = append(w, xs[i]+".param = "+g.b.Arg(rowParam(p)))
	}
	// Group the values by their first component: equal conditions with
	// equal arguments, rendered apart to compare them.
	type byFirst struct {
		key   string
		first *store.Predicate
		rest  [][]store.Predicate // the other components of each value
	}
	var firsts []*byFirst
	for _, a := range alts {
		if len(a.Composite) != len(comps) {
			return "", fmt.Errorf("sqlgen: composite %q values differ in their components", a.Param)
		}
		scratch := &gen{b: &Builder{D: g.b.D}}
		c0, err := scratch.simple(xs[0], &a.Composite[0])
		if err != nil {
			return "", err
		}
		key := c0 + "\x00" + fmt.Sprint(scratch.b.Args...)
		k := slices.IndexFunc(firsts, func(f *byFirst) bool { return f.key == key })
		if k < 0 {
			firsts = append(firsts, &byFirst{key: key, first: &a.Composite[0]})
			k = len(firsts) - 1
		}
		firsts[k].rest = append(firsts[k].rest, a.Composite[1:])
	}
	ors := make([]string, 0, len(firsts))
	for _, f := range firsts {
		c0, err := g.simple(xs[0], f.first)
		if err != nil {
			return "", err
		}
		var rest []string
		for _, r := range f.rest {
			if len(r) == 0 {
				rest = nil // a one-component value: the first component decides
				break
			}
			ands := make([]string, len(r))
			for j := range r {
				if ands[j], err = g.simple(xs[j+1], &r[j]); err != nil {
					return "", err
				}
			}
			rest = append(rest, joinTree(ands, " AND "))
		}
		if len(rest) > 0 {
			c0 += " AND " + orTree(rest)
		}
		ors = append(ors, c0)
	}
	where := xs[0] + ".grp > 0 AND " + strings.Join(w, " AND ")
	if len(ors) == 1 {
		where += " AND " + ors[0]
	} else {
		// Several first components: when they are all codes, list them
		// for the index (one probe per code instead of a scan of the
		// parameter's rows); the OR still decides.
		if codes := tokenCodes(firsts, func(f *byFirst) *store.Predicate { return f.first }); codes != nil {
			where += " AND " + xs[0] + ".code IN " + g.b.List(codes)
		}
		where += " AND " + orTree(ors)
	}
	return g.member(sc, xs[0], from.String(), where), nil
}

// tokenCodes returns the distinct codes of the token predicates of list
// (got from each element by pred), or nil unless every one is a plain
// match of a code (with or without a system).
func tokenCodes[E any](list []E, pred func(E) *store.Predicate) []string {
	var codes []string
	for _, e := range list {
		p := pred(e)
		if p.Token == nil || p.Token.Text || p.Token.OfType || p.Token.Code == "" {
			return nil
		}
		if !slices.Contains(codes, p.Token.Code) {
			codes = append(codes, p.Token.Code)
		}
	}
	return codes
}

// access renders the AccessFilter for the resource row alias (of type typ
// when known); "" when unrestricted. See store.AccessFilter for the model.
func (g *gen) access(alias, typ string) string {
	f := g.filter
	if f == nil {
		return ""
	}
	if f.Types == nil {
		if f.Compartment == nil {
			return ""
		}
		return g.compartment(alias, typ)
	}
	if typ != "" {
		return g.rules(alias, typ, f.RulesFor(typ))
	}
	// Several types: one branch per explicit type, and the wildcard rules
	// for the others.
	explicit := make([]string, 0, len(f.Types))
	for t := range f.Types {
		if t != "*" {
			explicit = append(explicit, t)
		}
	}
	sort.Strings(explicit)
	var ors []string
	for _, t := range explicit {
		r := g.rules(alias, t, f.Types[t])
		if r == "1=0" {
			continue
		}
		ors = append(ors, "("+alias+".type = "+g.b.Arg(t)+" AND "+r+")")
	}
	if w, ok := f.Types["*"]; ok {
		if r := g.rules(alias, "", w); r != "1=0" {
			if len(explicit) > 0 {
				r = alias + ".type NOT IN " + g.b.List(explicit) + " AND " + r
			}
			ors = append(ors, "("+r+")")
		}
	}
	if len(ors) == 0 {
		return "1=0"
	}
	return orTree(ors)
}

// rules renders "the resource (of type typ when known) satisfies one of
// rules": "1=1" when one is unconditional, "1=0" when none can match.
func (g *gen) rules(alias, typ string, rules []store.AccessRule) string {
	var ors []string
	for _, r := range rules {
		var ands []string
		if r.Compartment {
			if g.filter.Compartment == nil {
				continue // no compartment to be in: fail closed
			}
			c := g.compartment(alias, typ)
			if c == "1=0" {
				continue
			}
			ands = append(ands, c)
		}
		if len(r.Where) > 0 {
			if g.hist && !histDecidable(r.Where) {
				continue // not decidable on an earlier version: fail closed
			}
			w, err := g.where(scope{alias: alias, typ: typ, corr: true}, r.Where, -1)
			if err != nil {
				continue // a rule that cannot be rendered grants nothing
			}
			ands = append(ands, w)
		}
		if len(ands) == 0 {
			return "1=1"
		}
		ors = append(ors, joinTree(ands, " AND "))
	}
	if len(ors) == 0 {
		return "1=0"
	}
	return orTree(ors)
}

// compartment renders membership of the alias row (of type typ when known)
// in the filter's compartment (its exclusive form when Exclusive is set:
// see store.Compartment). In hist mode the alias is a history row and its
// references are those kept for its version (the exclusive form, used by
// write filters only, never applies there).
func (g *gen) compartment(alias, typ string) string {
	c := g.filter.Compartment
	f := g.alias("f")
	sub := func(cond string) string {
		if g.hist {
			return "EXISTS (SELECT 1 FROM " + TableHistoryReference + " " + f + " WHERE " + f + ".seq = " + alias + ".seq AND " +
				f + ".target_id = " + g.b.Arg(c.ID) + " AND " + f + ".target_type = " + g.b.Arg(c.Type) + " AND " + cond + ")"
		}
		return alias + ".rid IN (SELECT " + f + ".rid FROM " + TableReference + " " + f + " WHERE " + f + ".target_id = " +
			g.b.Arg(c.ID) + " AND " + f + ".target_type = " + g.b.Arg(c.Type) + " AND " + cond + ")"
	}
	// typeCol: the column holding the type of the row of reference alias o.
	typeCol := func(o string) string {
		if g.hist {
			return alias + ".type"
		}
		return o + ".type"
	}
	// alone: the row references no other resource of the compartment's
	// type through the parameters cond (on reference alias o) selects.
	alone := func(cond func(o string) string) string {
		o := g.alias("f")
		return "NOT EXISTS (SELECT 1 FROM " + TableReference + " " + o + " WHERE " + o + ".rid = " + alias + ".rid AND " +
			o + ".target_type = " + g.b.Arg(c.Type) + " AND " + o + ".target_id <> " + g.b.Arg(c.ID) + " AND " + cond(o) + ")"
	}
	exclusive := c.Exclusive && !g.hist
	if typ != "" {
		ps := c.Params[typ]
		var parts []string
		if typ == c.Type {
			parts = append(parts, alias+".id = "+g.b.Arg(c.ID))
		}
		if len(ps) > 0 && (typ != c.Type || !exclusive) {
			parts = append(parts, sub(typeCol(f)+" = "+g.b.Arg(typ)+" AND "+f+".param IN "+g.b.List(ps)))
		}
		var in string
		switch len(parts) {
		case 0:
			return "1=0"
		case 1:
			in = parts[0]
		default:
			in = "(" + parts[0] + " OR " + parts[1] + ")"
		}
		if !exclusive || len(ps) == 0 {
			return in
		}
		return "(" + in + " AND " + alone(func(o string) string { return o + ".param IN " + g.b.List(ps) }) + ")"
	}
	// The member types the filter may show: a hidden type's rows are
	// never results, so its references (every request's AuditEvent
	// names the patient it was about) are not even read.
	types := visibleMembers(g.filter)
	self := "(" + alias + ".type = " + g.b.Arg(c.Type) + " AND " + alias + ".id = " + g.b.Arg(c.ID) + ")"
	if len(types) == 0 {
		return self
	}
	byType := func(o string, member bool) string {
		var ors []string
		for _, t := range types {
			if member && exclusive && t == c.Type {
				continue // exclusive: a Patient is only in its own compartment
			}
			col := o + ".type"
			if member {
				col = typeCol(o)
			}
			ors = append(ors, "("+col+" = "+g.b.Arg(t)+" AND "+o+".param IN "+g.b.List(c.Params[t])+")")
		}
		if len(ors) == 0 {
			return "1=0"
		}
		return orTree(ors)
	}
	var member string
	if g.hist || g.b.D != SQLite {
		// PostgreSQL tests the types' OR on the owner's index range in
		// no time; planning a branch per type cost it ten times more.
		member = sub(byType(f, true))
	} else {
		// SQLite: one exact index range (target_id, type, param) per
		// member type, whatever the statistics say: a scan of every
		// reference to the compartment's owner with the types' OR on
		// each row read thousands of AuditEvent rows for a patient much
		// asked about, and no statistics tell the planner which owner
		// that is.
		var branches []string
		for _, t := range types {
			if exclusive && t == c.Type {
				continue // exclusive: a Patient is only in its own compartment
			}
			branches = append(branches, g.memberRefs(f, c, t))
		}
		member = "1=0"
		if len(branches) > 0 {
			member = alias + ".rid IN (" + strings.Join(branches, " UNION ALL ") + ")"
		}
	}
	in := "(" + self + " OR " + member + ")"
	if !exclusive {
		return in
	}
	return "(" + in + " AND " + alone(func(o string) string { return byType(o, false) }) + ")"
}

// memberRefs renders the rids of the resources of typ that reference c's
// owner through typ's compartment parameters: one exact range (target_id,
// type, param) of the reference target index, on reference alias o.
func (g *gen) memberRefs(o string, c *store.Compartment, typ string) string {
	return "SELECT " + o + ".rid FROM " + TableReference + " " + o + " WHERE " + o + ".target_id = " + g.b.Arg(c.ID) +
		" AND " + o + ".type = " + g.b.Arg(typ) + " AND " + o + ".param IN " + g.b.List(c.Params[typ]) + " AND " + o + ".target_type = " + g.b.Arg(c.Type)
}

// sortExpr returns the ORDER BY term of a sort key.
func (g *gen) sortExpr(alias string, k store.SortKey) (string, error) {
	dir := " ASC"
	agg := "min"
	if k.Desc {
		dir, agg = " DESC", "max"
	}
	switch k.Param {
	case "_id":
		return alias + ".id" + dir, nil
	case "_lastUpdated":
		return alias + ".last_updated" + dir, nil
	}
	var table, col string
	switch k.Type {
	case "date":
		table, col = TableDate, "lo"
		if k.Desc {
			col = "hi"
		}
	case "number":
		table, col = TableNumber, "lo"
		if k.Desc {
			col = "hi"
		}
	case "quantity":
		table, col = TableQuantity, "lo"
		if k.Desc {
			col = "hi"
		}
	case "string":
		table, col = TableString, "norm"
	case "token":
		table, col = TableToken, "code"
	case "reference":
		table, col = TableReference, "url"
	case "uri":
		table, col = TableURI, "uri"
	default:
		return "", fmt.Errorf("sqlgen: cannot sort by %q of type %q", k.Param, k.Type)
	}
	x := g.alias("s")
	expr := x + "." + col
	if k.Type == "reference" {
		// Local references sort by Type/id however they were written
		// (relative or absolute with this server's base); others by URL.
		expr = "CASE WHEN " + x + ".target_type <> '' THEN " + x + ".target_type || '/' || " + x + ".target_id ELSE " + x + ".url END"
	}
	return "(SELECT " + agg + "(" + expr + ") FROM " + table + " " + x + " WHERE " + x + ".rid = " + alias +
		".rid AND " + x + ".param = " + g.b.Arg(k.Param) + ")" + dir + " NULLS LAST", nil
}

// Selectivity ranks used to pick the clause that drives a SQLite search.
const (
	rankID = iota
	rankReference
	rankEqual
	rankPrefix
	rankJoin
	rankRange
	rankWeak
	rankNone // cannot drive (negated, :missing)
)

// rank estimates how selective a clause is (lower = fewer rows), from the
// kind of its weakest alternative.
func rank(c store.Clause) int {
	if c.Negate || len(c.Any) == 0 {
		return rankNone
	}
	worst := rankID
	for i := range c.Any {
		worst = max(worst, predRank(&c.Any[i]))
	}
	return worst
}

func predRank(p *store.Predicate) int {
	switch {
	case p.Missing != nil:
		return rankNone
	case p.ID != nil:
		return rankID
	case p.Reference != nil:
		if p.Reference.TargetID != "" || (p.Reference.URL != "" && !p.Reference.Below) {
			return rankReference
		}
		return rankWeak
	case p.Token != nil:
		if p.Token.Text || p.Token.Code == "" {
			return rankWeak
		}
		return rankEqual
	case p.String != nil:
		switch p.String.Mode {
		case store.StringExact:
			return rankEqual
		case store.StringContains:
			return rankWeak
		}
		if len(p.String.Value) < 3 {
			return rankWeak
		}
		return rankPrefix
	case p.URI != nil:
		if p.URI.Below || p.URI.Above {
			return rankWeak
		}
		return rankEqual
	case p.Chain != nil, p.Has != nil:
		return rankJoin
	case len(p.Composite) > 0:
		return rankEqual
	case p.Date != nil, p.Number != nil, p.Quantity != nil, p.LastUpdated != nil:
		return rankRange
	}
	return rankNone
}

// Driver returns the index of the clause that should drive a SQLite
// search (the most selective by rank, first on ties), or -1 when none can.
func Driver(clauses []store.Clause) int {
	best, bestRank := -1, rankNone
	for i, c := range clauses {
		if r := rank(c); r < bestRank {
			best, bestRank = i, r
		}
	}
	return best
}
