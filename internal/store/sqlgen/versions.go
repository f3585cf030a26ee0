package sqlgen

import (
	"sort"
	"strings"

	"github.com/lapis-health/lapis/internal/store"
)

// Tables holding, per superseded version (keyed by its history seq), the
// index rows an access filter may test: tokens (granular scopes) and local
// references (compartments). The current version of a resource is tested
// on the index tables; every earlier version on these, so that a caller
// whose grant is limited to a compartment or to categories sees a version
// only when that version itself was inside the limit.
const (
	TableHistoryToken     = "history_token"
	TableHistoryReference = "history_reference"
)

// KeepSQL returns the statement that copies the index rows of table
// (TableToken or TableReference) of a resource's current version into the
// history access table, keyed by that version's seq, before the version is
// superseded. typ, id and version are SQL expressions (placeholders) naming
// the version; ridCond completes "x.rid <ridCond>" to select its rows.
// Only local references (with a target type) are kept: compartments are
// made of them.
func KeepSQL(d Dialect, table, typ, id, version, ridCond string) string {
	var into, cols, where string
	switch table {
	case TableToken:
		into, cols = TableHistoryToken, "param, code, system"
	case TableReference:
		into, cols, where = TableHistoryReference, "param, target_id, target_type", " AND x.target_type <> ''"
	default:
		panic("sqlgen: no history access table for " + table)
	}
	sel := "SELECT DISTINCT h.seq, x." + strings.ReplaceAll(cols, ", ", ", x.") + " FROM " + table + " x JOIN history h ON h.type = " + typ +
		" AND h.id = " + id + " AND h.version = " + version + " WHERE x.rid " + ridCond + where
	if d == Postgres {
		return "INSERT INTO " + into + " (seq, " + cols + ") " + sel + " ON CONFLICT DO NOTHING"
	}
	return "INSERT OR IGNORE INTO " + into + " (seq, " + cols + ") " + sel
}

// VersionSQL returns the query of the seq and deleted flag of a version
// (type, id and version bound as the first three arguments) and the
// resource's current version number.
func VersionSQL(d Dialect) string {
	return "SELECT h.seq, h.deleted, r.version FROM history h JOIN resources r ON r.rid = h.rid WHERE h.type = " +
		d.Placeholder(1) + " AND h.id = " + d.Placeholder(2) + " AND h.version = " + d.Placeholder(3)
}

// KeptRows returns the rows of ix kept for a superseded version (what
// KeepSQL copies): its tokens and its local references, without
// duplicates.
func KeptRows(ix *store.Index) ([]store.TokenRow, []store.ReferenceRow) {
	type tk struct{ param, code, system string }
	type rk struct{ param, id, typ string }
	var tokens []store.TokenRow
	var refs []store.ReferenceRow
	seenT, seenR := map[tk]bool{}, map[rk]bool{}
	for _, r := range ix.Tokens {
		if k := (tk{r.Param, r.Code, r.System}); !seenT[k] {
			seenT[k] = true
			tokens = append(tokens, r)
		}
	}
	for _, r := range ix.References {
		if r.TargetType == "" {
			continue
		}
		if k := (rk{r.Param, r.TargetID, r.TargetType}); !seenR[k] {
			seenR[k] = true
			refs = append(refs, r)
		}
	}
	return tokens, refs
}

// rowLevel reports whether the filter limits some visible resource of typ
// (of any type when typ is "") by its content: a rule requiring the
// compartment or criteria. Without one, every version of a visible resource
// is visible and history needs no per-version test.
func rowLevel(f *store.AccessFilter, typ string) bool {
	if f == nil {
		return false
	}
	if f.Types == nil {
		return f.Compartment != nil
	}
	limited := func(rs []store.AccessRule) bool {
		for _, r := range rs {
			if r.Compartment || len(r.Where) > 0 {
				return true
			}
		}
		return false
	}
	if typ != "" {
		return limited(f.RulesFor(typ))
	}
	for _, rs := range f.Types {
		if limited(rs) {
			return true
		}
	}
	return false
}

// versions renders "the history row alias (of type typ when known) was
// inside the filter in its own version", testing the history access tables
// instead of the index tables. Rules that cannot be decided on them fail
// closed.
func (g *gen) versions(alias, typ string) string {
	g.hist = true
	defer func() { g.hist = false }()
	return g.access(alias, typ)
}

// histDecidable reports whether clauses can be tested on the history
// access tables: tokens (not :text), references by target id, _id and
// _lastUpdated.
func histDecidable(clauses []store.Clause) bool {
	for _, c := range clauses {
		for i := range c.Any {
			p := &c.Any[i]
			switch {
			case p.Missing != nil, len(p.Composite) > 0, p.Chain != nil, p.Has != nil:
				return false
			case p.ID != nil, p.LastUpdated != nil:
			case p.Token != nil:
				if p.Token.Text {
					return false
				}
			case p.Reference != nil:
				if p.Reference.URL != "" || p.Reference.TargetID == "" {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// histMember renders "the history row of sc has a row in the history
// access table standing for table (whose alias is x) satisfying where".
func (g *gen) histMember(sc scope, table, x, where string) string {
	switch table {
	case TableToken:
		table = TableHistoryToken
	case TableReference:
		table = TableHistoryReference
	default:
		return "1=0" // not kept; histDecidable keeps such rules out
	}
	return "EXISTS (SELECT 1 FROM " + table + " " + x + " WHERE " + x + ".seq = " + sc.alias + ".seq AND " + where + ")"
}

// compartmentDriver returns a query of rids that contains every resource
// the filter lets through for typ (any type when typ is ""), drawn from
// the compartment's references by index, or "" when some visible resource
// need not be in the compartment (no such bounded set exists). For the
// system (typ ""), the types outside the compartment a rule shows whole
// (the shared types a patient/ scope reads) add all their resources, by
// the (type, id) index; the filter still decides which are shown. A type
// of the compartment shown whole gives no driver.
func (g *gen) compartmentDriver(typ string) string {
	f := g.filter
	if f == nil || f.Compartment == nil {
		return ""
	}
	onlyCompartment := func(rs []store.AccessRule) bool {
		for _, r := range rs {
			if !r.Compartment {
				return false
			}
		}
		return true
	}
	if f.Types != nil {
		if typ != "" {
			if !onlyCompartment(f.RulesFor(typ)) {
				return ""
			}
		} else {
			for t, rs := range f.Types {
				// A type of the compartment shown whole (a user/ scope on
				// it beside the patient's) may hold most of the data: the
				// scan from the newest version back serves it better.
				if !onlyCompartment(rs) && (t == "*" || len(f.Compartment.Params[t]) > 0) {
					return ""
				}
			}
		}
	}
	c := f.Compartment
	var parts []string
	// The owner is bound only for a branch the SQL keeps: PostgreSQL
	// cannot type a bound parameter the statement does not use.
	if ps := c.Params[typ]; typ == "" || len(ps) > 0 {
		if typ != "" {
			parts = append(parts, g.memberRefs("dr", c, typ))
		} else if types := visibleMembers(f); len(types) > 0 {
			// Only the referrers of the types in the compartment the
			// caller may see: one index range per type. Without the
			// list every reference to the compartment's owner was a
			// candidate, the AuditEvents of every request about it
			// included, which no caller but an admin sees and whose
			// number grows with every request.
			parts = append(parts, g.byTypes("dr", TableReference, types,
				"dr.target_id = "+g.b.Arg(c.ID)+" AND dr.target_type = "+g.b.Arg(c.Type)+" AND "))
		}
	}
	if typ == "" || typ == c.Type {
		parts = append(parts, "SELECT ds.rid FROM resources ds WHERE ds.type = "+g.b.Arg(c.Type)+" AND ds.id = "+g.b.Arg(c.ID))
	}
	if typ == "" {
		var whole []string
		for t, rs := range f.Types {
			if !onlyCompartment(rs) {
				whole = append(whole, t)
			}
		}
		if len(whole) > 0 {
			sort.Strings(whole)
			parts = append(parts, g.byTypes("dw", "resources", whole, ""))
		}
	}
	if len(parts) == 0 {
		return "SELECT 0 WHERE 1=0" // nothing of typ is in the compartment
	}
	return strings.Join(parts, " UNION ALL ")
}

// byTypes renders the rids of the rows of table (alias a) of the given
// types that satisfy cond (rendered before the type test: "" or ending in
// " AND "), each type's own range of an index that starts with the type
// (after cond's equalities). On PostgreSQL the types are probed one by
// one (a LATERAL subquery per element of the list): the driven
// statements run with generic plans, which cannot hash an IN list of
// bound values nor know how many rows it selects, and read the whole
// table for the shared types of a patient/ scope (3,000 pages for 242
// rows) and tested every reference to the patient against the 67 types
// of the compartment one by one.
func (g *gen) byTypes(a, table string, types []string, cond string) string {
	if g.b.D != Postgres {
		return "SELECT " + a + ".rid FROM " + table + " " + a + " WHERE " + cond + a + ".type IN " + g.b.List(types)
	}
	l := g.b.List(types)
	return "SELECT " + a + ".rid FROM unnest(ARRAY[" + l[1:len(l)-1] + "]::text[]) " + a + "t(type) CROSS JOIN LATERAL (SELECT " + a + ".rid FROM " +
		table + " " + a + " WHERE " + cond + a + ".type = " + a + "t.type OFFSET 0) " + a
}

// driverDecides reports whether the compartment driver of typ's history
// (compartmentDriver) is the whole access rule: every rule for typ is
// membership in the filter's compartment, not its exclusive form, and
// nothing else, so the candidates the driver lists are exactly the rows
// the rule lets through.
func (g *gen) driverDecides(typ string) bool {
	f := g.filter
	if typ == "" || f == nil || f.Compartment == nil || f.Compartment.Exclusive {
		return false
	}
	if f.Types == nil {
		return true
	}
	rs := f.RulesFor(typ)
	if len(rs) == 0 {
		return false
	}
	for _, r := range rs {
		if !r.Compartment || len(r.Where) > 0 {
			return false
		}
	}
	return true
}

// visibleMembers returns, sorted, the types that are in f's compartment
// through references and whose resources f may show: a type with no rule
// (AuditEvent for a caller other than an admin) is left out.
func visibleMembers(f *store.AccessFilter) []string {
	var out []string
	for t, ps := range f.Compartment.Params {
		if len(ps) > 0 && f.MayShow(t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}
