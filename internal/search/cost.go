package search

import (
	"net/http"
	"strconv"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// MaxCost is the largest estimated cost (see Cost) a search may have.
// Larger searches are a 400 (too-costly). It admits every search of
// MaxValues plain values (tokens, references, strings, dates, numbers,
// quantities) and bounds the kinds whose work grows faster with their
// values: composites, chains, _has, :contains, :text, :missing, _sort and
// includes.
const MaxCost = 1024

// Cost units of the search model: an index lookup of one value (a token
// code, a reference, a string prefix, a date range) costs 1.
const (
	// costClause is every search parameter occurrence: one more
	// subquery to plan and to probe per candidate.
	costClause = 1
	// costValue is one plain value: one index probe or range.
	costValue = 1
	// costScan is one value that cannot use an index prefix (:contains,
	// :text, uri :above), tested on every row of its parameter, or that
	// probes every index table (:missing).
	costScan = 8
	// costComponent is each component of one composite value: the
	// components are index rows joined on their group.
	costComponent = 2
	// costJoin is one chain or _has: a join through the reference index
	// to resources of another type, whose criteria cost costJoinFactor
	// times their own cost (they are tested once per reference row, so
	// their work is the product of their values and the references).
	costJoin       = 32
	costJoinFactor = 8
	// costSort is each _sort key: a correlated lookup per match, up to the
	// snapshot cap.
	costSort = 8
	// costInclude is each _include or _revinclude (one join per page);
	// :iterate repeats it up to sqlgen's IterateRounds (5) times, and a
	// wildcard (Type:*) follows every reference parameter.
	costInclude        = 8
	costIterateFactor  = 5
	costWildcardFactor = 2
)

// Cost estimates the database work a search can cause, in the units above:
// the sum over its clauses, sort keys and includes. Access-control filters
// are the server's own and are not counted.
func Cost(q *store.Query) int {
	total := 0
	for i := range q.Where {
		total += ClauseCost(q.Where[i])
	}
	return total + len(q.Sort)*costSort + includesCost(q.Include) + includesCost(q.RevInclude)
}

// ClauseCost is the cost of one search parameter occurrence (an OR of
// values).
func ClauseCost(c store.Clause) int {
	n := costClause
	for i := range c.Any {
		n += predicateCost(&c.Any[i])
	}
	return n
}

func predicateCost(p *store.Predicate) int {
	switch {
	case p.Missing != nil:
		return costScan
	case p.String != nil:
		if p.String.Mode == store.StringContains {
			return costScan
		}
	case p.Token != nil:
		if p.Token.Text {
			return costScan
		}
	case p.URI != nil:
		if p.URI.Above {
			return costScan
		}
	case p.Chain != nil:
		return costJoin + costJoinFactor*ClauseCost(p.Chain.Where)
	case p.Has != nil:
		return costJoin + costJoinFactor*ClauseCost(p.Has.Where)
	case len(p.Composite) > 0:
		return costComponent * len(p.Composite)
	}
	return costValue
}

func includesCost(incs []store.Include) int {
	n := 0
	for _, inc := range incs {
		c := costInclude
		if inc.Param == "*" || inc.SourceType == "*" {
			c *= costWildcardFactor
		}
		if inc.Iterate {
			c *= costIterateFactor
		}
		n += c
	}
	return n
}

// tooCostly is the 400 for a search over MaxCost: it names the parameter
// that costs most (worst, with its cost) and what to reduce.
func tooCostly(total int, worst string, worstCost int) error {
	msg := "The search is too costly (estimated cost " + strconv.Itoa(total) + ", the limit is " + strconv.Itoa(MaxCost) + ")"
	if worst != "" {
		msg += "; " + worst + " accounts for " + strconv.Itoa(worstCost)
	}
	msg += ". Reduce the comma-separated values of composite, chained, _has, :contains, :text or :missing parameters, the chained parameters, the _sort keys or the includes, or split the search"
	return outcome.New(http.StatusBadRequest, "too-costly", "%s", msg)
}
