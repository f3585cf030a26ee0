package sqlite

import (
	"strings"
	"sync"
)

// anonMinArgs is the number of arguments from which anonymous rewrites a
// statement's placeholders: below it the rewrite would cost more than
// the lookups it saves.
const anonMinArgs = 16

// anonymous rewrites the numbered placeholders of query (?N, as sqlgen
// writes them) as anonymous ones (?) in the order they appear, with args
// reordered (a placeholder used twice gets its value twice) to match.
// Statements with fewer than anonMinArgs arguments, or none numbered,
// and texts of several statements come back unchanged.
//
// The driver (modernc.org/sqlite) asks SQLite for every parameter's name
// before it binds the parameter, and SQLite finds a numbered parameter's
// name by scanning the list of the statement's names: binding N
// parameters took time quadratic in N. The access filter of a patient's
// search or history binds the compartment's types and parameters, a few
// hundred: their lookups were 11 % of the CPU of a patient app's system
// _history. An anonymous parameter has no name to look up.
func anonymous(query string, args []any) (string, []any) {
	if len(args) < anonMinArgs {
		return query, args
	}
	anonCache.Lock()
	rw, ok := anonCache.m[query]
	anonCache.Unlock()
	if !ok {
		rw = rewriteAnonymous(query, len(args))
		anonCache.Lock()
		if len(anonCache.m) >= anonCacheMax {
			clear(anonCache.m)
		}
		anonCache.m[query] = rw
		anonCache.Unlock()
	}
	if rw.order == nil || rw.args != len(args) {
		return query, args
	}
	out := make([]any, len(rw.order))
	for i, n := range rw.order {
		out[i] = args[n]
	}
	return rw.query, out
}

// anonRewrite is a statement's rewrite: its anonymous text and, for each
// placeholder in order, the index of its argument (order nil: unchanged).
type anonRewrite struct {
	query string
	order []int
	args  int // the number of arguments it was made for
}

// anonCacheMax bounds anonCache as the statement cache is bounded
// (sqlgen's statements take a few hundred shapes, each text a few KB; the
// cache starts again empty when it is full).
const anonCacheMax = 512

// anonCache keeps the rewrites by statement text.
var anonCache = struct {
	sync.Mutex
	m map[string]anonRewrite
}{m: map[string]anonRewrite{}}

// rewriteAnonymous computes the rewrite of query for nargs arguments.
func rewriteAnonymous(query string, nargs int) anonRewrite {
	unchanged := anonRewrite{args: nargs}
	var sb strings.Builder
	sb.Grow(len(query))
	var order []int
	var quote byte // the quote character of the literal or identifier we are in
	last := 0      // query[last:i] is not yet copied
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote reopens at once: same state
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == ';' && strings.TrimSpace(query[i+1:]) != "":
			// Several statements: the driver binds each one's
			// anonymous parameters from the first argument again,
			// so only numbered ones reach the later statements.
			return unchanged
		case c == '?':
			j := i + 1
			n := 0
			for j < len(query) && query[j] >= '0' && query[j] <= '9' && n <= nargs {
				n = n*10 + int(query[j]-'0')
				j++
			}
			if j == i+1 || n < 1 || n > nargs {
				// A bare ? or a number out of range: leave the
				// statement as it was, for SQLite to judge.
				return unchanged
			}
			sb.WriteString(query[last : i+1])
			order = append(order, n-1)
			last = j
			i = j - 1
		}
	}
	if len(order) == 0 {
		return unchanged
	}
	sb.WriteString(query[last:])
	return anonRewrite{query: sb.String(), order: order, args: nargs}
}
