// Package store persists FHIR resources, every version of them, and their
// search index rows, and answers searches described by a Query. It is the
// lowest layer of Lapis: it knows SQL dialects (SQLite, PostgreSQL) but no
// HTTP and no FHIR semantics beyond what is written here. Higher layers
// (search parsing, REST handlers) build Query values and Write values; the
// store never scans resource JSON to answer a search.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by stores. Callers compare with errors.Is.
var (
	// ErrNotFound means no resource (or version) with that type and id exists.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a concurrent writer changed the resource first
	// (the expected previous version did not match).
	ErrConflict = errors.New("store: version conflict")
	// ErrSnapshotExpired means a paging snapshot no longer exists.
	ErrSnapshotExpired = errors.New("store: search snapshot expired")
)

// Resource is one stored version of a resource.
type Resource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time // millisecond precision, UTC
	Deleted     bool      // a delete marker version; Body is empty
	Body        []byte    // the resource JSON exactly as served (meta.versionId and meta.lastUpdated already set)
	// Method is the interaction that produced this version: "POST", "PUT",
	// "PATCH" or "DELETE" (used for history Bundle entry.request).
	Method string
}

// Write is one new version to store, prepared by the domain layer.
type Write struct {
	Type    string
	ID      string
	Version int64 // the new version number; must be current+1 (1 for a new resource)
	// LastUpdated must equal the meta.lastUpdated written in Body.
	LastUpdated time.Time
	Deleted     bool
	Method      string
	Body        []byte // empty when Deleted
	Index       Index  // search index rows of this version (empty when Deleted)
}

// Index holds the search index rows extracted from one resource version.
// Param is the search parameter code (e.g. "code", "patient", "_tag").
// Group is 0 except for the components of a composite parameter, whose rows
// are stored under Param "<composite code>$<n>" (n = 1-based component
// index) and share a Group number (>0) per matched composite element, so the
// components of one element can be joined.
type Index struct {
	Strings    []StringRow
	Tokens     []TokenRow
	References []ReferenceRow
	Dates      []DateRow
	Numbers    []NumberRow
	Quantities []QuantityRow
	URIs       []URIRow
}

// StringRow indexes a string search value.
type StringRow struct {
	Param string
	Group int32
	Norm  string // NormalizeString(value): lower case, accents removed, whitespace collapsed
	Exact string // the value as written
}

// TokenRow indexes a token: a Coding, CodeableConcept coding, Identifier,
// ContactPoint, code, boolean, id or uri used as a token.
type TokenRow struct {
	Param  string
	Group  int32
	System string // "" when the value has no system
	Code   string // exact, case-sensitive
	Text   string // NormalizeString of display / CodeableConcept.text / Identifier.type.text, for :text
}

// ReferenceRow indexes a reference. For a relative or local absolute
// reference ("Patient/123", "[base]/Patient/123") TargetType and TargetID are
// set; URL always holds the reference as written (or the canonical URL,
// without a |version suffix).
type ReferenceRow struct {
	Param      string
	Group      int32
	TargetType string
	TargetID   string
	URL        string
}

// DateRow indexes a date, dateTime, instant, Period or Timing as an
// inclusive range [Lo, Hi] of Unix milliseconds (UTC). Open ends use
// MinTime/MaxTime.
type DateRow struct {
	Param  string
	Group  int32
	Lo, Hi int64
}

// Bounds for open-ended date ranges.
const (
	MinTime int64 = -62135596800000 // 0001-01-01T00:00:00Z
	MaxTime int64 = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// NumberRow indexes a number (integer, decimal, or Range low/high) as the
// inclusive range [Lo, Hi] of the stored value (Lo == Hi for a plain number).
type NumberRow struct {
	Param  string
	Group  int32
	Lo, Hi float64
}

// QuantityRow indexes a Quantity (or Money, SimpleQuantity, Duration, Age,
// or Range with its low/high) as an inclusive range [Lo, Hi] with its units.
type QuantityRow struct {
	Param  string
	Group  int32
	System string
	Code   string
	Unit   string // Quantity.unit as written (matched when no system is given)
	Lo, Hi float64
}

// URIRow indexes a uri, url or canonical value.
type URIRow struct {
	Param string
	Group int32
	URI   string
}

// Store is a FHIR resource store. Implementations: SQLite and PostgreSQL.
type Store interface {
	// Read returns the current version of a resource; a deleted resource is
	// returned with Deleted set. ErrNotFound if it never existed.
	Read(ctx context.Context, typ, id string) (*Resource, error)
	// VRead returns one version. ErrNotFound if that version does not exist.
	VRead(ctx context.Context, typ, id string, version int64) (*Resource, error)
	// History lists versions, newest first.
	History(ctx context.Context, q HistoryQuery) (*HistoryPage, error)
	// Search runs a search.
	Search(ctx context.Context, q *Query) (*SearchResult, error)
	// Update runs fn in one atomic read-write transaction. On SQLite it is
	// BEGIN IMMEDIATE; on PostgreSQL reads use SELECT ... FOR UPDATE where
	// they precede writes. If fn returns an error the transaction is rolled
	// back and that error returned.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// Close releases the database.
	Close() error
}

// Tx is a read-write transaction.
type Tx interface {
	// Read returns the current version (locked for update on PostgreSQL).
	Read(ctx context.Context, typ, id string) (*Resource, error)
	// Search runs a search inside the transaction (for conditional
	// create/update/delete and conditional references).
	Search(ctx context.Context, q *Query) (*SearchResult, error)
	// Put stores a new version. It returns ErrConflict when w.Version is not
	// the current version + 1 (or 1 for a resource that does not exist).
	Put(ctx context.Context, w *Write) error
}

// HistoryQuery selects versions for _history at instance (Type and ID set),
// type (Type set) or system level (neither).
type HistoryQuery struct {
	Type  string
	ID    string
	Since time.Time // zero = no bound; versions with LastUpdated >= Since
	At    time.Time // zero = no bound; versions with LastUpdated < At (used for _at / stable paging)
	// AtFrom, with At, selects the versions that were current at some
	// time in [AtFrom, At) (R4 history's _at: the period of its value):
	// a version is current from its LastUpdated until the next version's.
	// Zero = the versions before At, current since or not.
	AtFrom time.Time
	// Count is the page size; 0 or less means DefaultHistoryCount.
	Count int
	// Before is an opaque cursor from a previous page's Next; empty for the first page.
	Before string
	// Version, with Type and ID, selects that one version (a vread through
	// Filter); the page's Total is then the number of versions returned.
	Version int64
	// Superseded selects only the versions that are no longer current
	// (maintenance: VersionIndexWriter); the page's Total is then -1 (not
	// computed).
	Superseded bool
	// TotalLimit, when positive, bounds the work of the page's Total: at
	// most TotalLimit versions are counted, and a query matching more has
	// Total -1 (not computed). A type or system history counts every
	// version of the server, which grows by every write.
	TotalLimit int
	// Filter restricts the versions returned: a version is returned when
	// the resource's current version passes the filter and, where the
	// filter limits the type to a compartment or criteria, that version
	// itself was inside them (decided on the index rows it had).
	Filter *AccessFilter
}

// DefaultHistoryCount is the History page size used when HistoryQuery.Count
// is not positive.
const DefaultHistoryCount = 50

// HistoryPage is one page of history, newest first.
type HistoryPage struct {
	Versions []Resource
	Total    int    // number of versions matching the query (all pages); -1 when not computed
	Next     string // cursor for the following page; "" if none
}

// Query is a parsed search.
type Query struct {
	// Type is the resource type searched; "" for a system-level search
	// across Types (all types when Types is empty).
	Type  string
	Types []string
	// Where clauses are ANDed.
	Where []Clause
	Sort  []SortKey
	// Count is the page size (0 = only the total is wanted, _summary=count).
	Count int
	// Offset is the position of the first match on this page.
	Offset int
	// Snapshot, when set, pages through the ordered result of an earlier
	// search (SearchResult.Snapshot) instead of re-running Where/Sort. The
	// store keeps at most a bounded number of matches (10,000) per snapshot;
	// pages past that bound re-run the snapshot's original Where/Sort with
	// LIMIT/OFFSET. Include, RevInclude and Filter are taken from this Query,
	// so callers pass them again on every page.
	Snapshot string
	// Keyset, when set, pages by position instead of Offset and Snapshot:
	// the matches in (last updated, rid) order that come after Keyset (the
	// zero Keyset: from the first), Count at a time, with no snapshot and
	// no total; SearchResult.Next is the position to continue from. Each
	// page costs the same however deep it is (Bulk Data exports read whole
	// types this way). Sort must be empty.
	Keyset *Keyset
	// Total asks for SearchResult.Total: TotalNone, TotalEstimate, TotalAccurate.
	Total      TotalMode
	Include    []Include
	RevInclude []Include
	// Filter restricts every match and every included resource (the access
	// control seam). nil = unrestricted.
	Filter *AccessFilter
	// MatchFilter, when set, further restricts the matches (not included
	// resources): a caller may be allowed to read more than it may search
	// (SMART r without s), and included resources count as reads.
	MatchFilter *AccessFilter
	// Compartment, when set, restricts the matches to the members of one
	// compartment (compartment search, Patient/{id}/$everything): the
	// compartment resource itself and the resources of the types in
	// Params that reference it through one of their Params (see
	// Compartment; Exclusive is ignored). Filter and MatchFilter still
	// apply.
	Compartment *Compartment
}

// TotalMode says whether and how the total is computed.
type TotalMode int

// Total modes (_total).
const (
	TotalAccurate TotalMode = iota // default
	TotalNone
	TotalEstimate
)

// Clause is an OR of predicates (comma-separated values of one parameter).
// Negate turns it into NOT(p1 OR p2 ...): used for token :not, which also
// matches resources without any value.
type Clause struct {
	Any    []Predicate
	Negate bool
}

// Predicate is one test on one search parameter. Exactly one of the match
// fields (or Missing) is set.
type Predicate struct {
	Param string // search parameter code; "_id" and "_lastUpdated" use the resource columns
	// Missing: true = the resource has no index row for Param; false = it has one.
	Missing *bool

	String    *StringMatch
	Token     *TokenMatch
	Reference *ReferenceMatch
	Date      *RangeMatch // ranges in Unix ms, see RangeMatch
	Number    *RangeMatch
	Quantity  *QuantityMatch
	URI       *URIMatch
	// ID matches _id (the resource id) exactly.
	ID *string
	// LastUpdated matches _lastUpdated.
	LastUpdated *RangeMatch

	// Chain: Param is a reference parameter; the referenced resource must be
	// of TargetType and satisfy Where (subject:Patient.name=x).
	Chain *Chain
	// Has: reverse chain (_has:Observation:patient:code=x).
	Has *Has
	// Composite: the components, each with Param "<code>$<n>", all matched
	// on rows of the same Group.
	Composite []Predicate
}

// StringMatch matches a string parameter.
type StringMatch struct {
	Value string // already normalized with NormalizeString unless Exact
	Mode  StringMode
}

// StringMode is the kind of string match.
type StringMode int

// String match modes.
const (
	StringPrefix   StringMode = iota // default: normalized starts-with
	StringExact                      // :exact, compares StringRow.Exact
	StringContains                   // :contains, normalized substring
)

// TokenMatch matches a token parameter.
type TokenMatch struct {
	// System: nil = any system ("code"); pointer to "" = no system ("|code");
	// non-empty = that system.
	System *string
	Code   string // "" with System set = any code in that system ("system|")
	// Text: match TokenRow.Text by normalized prefix (:text); Code holds the normalized text.
	Text bool
	// Identifier type match (:of-type): System/Code of the Identifier.type, value in Value.
	// Such rows are indexed under OfTypeParam(param) with Code OfTypeCode(type code, value).
	OfType bool
	Value  string
}

// OfTypeParam is the Param under which the extractor stores the rows that
// answer token :of-type searches on param (e.g. "identifier:of-type"). For
// every Identifier with a value and a typed coding it emits one TokenRow with
// Param OfTypeParam(param), System = the type coding's system and Code =
// OfTypeCode(the type coding's code, Identifier.value).
func OfTypeParam(param string) string { return param + ":of-type" }

// OfTypeCode is the TokenRow.Code of an :of-type row: the Identifier.type
// code and the Identifier.value joined by "|".
func OfTypeCode(typeCode, value string) string { return typeCode + "|" + value }

// ReferenceMatch matches a reference parameter: by TargetType/ID (either
// may be empty for "any type"), or by URL (absolute/canonical).
type ReferenceMatch struct {
	TargetType string
	TargetID   string
	URL        string
	// Below for :below on canonical URLs (prefix match).
	Below bool
}

// Prefix is a search comparison prefix.
type Prefix string

// FHIR search prefixes.
const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

// RangeMatch compares the implicit range [Lo, Hi] of a search value with the
// indexed range of each row using FHIR range semantics for Prefix:
//
//	eq: row ⊆ search   (row.Lo >= Lo && row.Hi <= Hi)
//	ne: not eq
//	gt: row.Hi > Hi    lt: row.Lo < Lo
//	ge: row.Hi >= Lo   le: row.Lo <= Hi
//	sa: row.Lo > Hi    eb: row.Hi < Lo
//	ap: ranges overlap [ApLo, ApHi] (the search value widened by the approximation margin)
//
// Dates are Unix ms; numbers and quantities are float64. For numbers and
// quantities the parser passes Lo == Hi == the exact search value with the
// ordering prefixes (gt, lt, ge, le, sa, eb), as R4 compares those with the
// exact value; eq, ne and ap use the value's precision range.
type RangeMatch struct {
	Prefix     Prefix
	Lo, Hi     float64
	ApLo, ApHi float64
}

// QuantityMatch matches a quantity: the range and optionally the units.
type QuantityMatch struct {
	Range RangeMatch
	// System and Code: when System is set both must match; when only Code is
	// set it matches Code or Unit.
	System string
	Code   string
}

// URIMatch matches a uri parameter.
type URIMatch struct {
	Value string
	Below bool // :below — the indexed URI starts with Value
	Above bool // :above — Value starts with the indexed URI
}

// Chain is a forward chain on a reference parameter.
type Chain struct {
	TargetType string
	Where      Clause
}

// Has is a reverse chain: resources of Type whose reference parameter
// RefParam points at the matched resource, and which satisfy Where.
type Has struct {
	Type     string
	RefParam string
	Where    Clause
}

// SortKey orders results by a parameter ("_id", "_lastUpdated" or any
// indexed parameter); Type is the parameter type.
type SortKey struct {
	Param string
	Type  string
	Desc  bool
}

// MaxIndexRows bounds the index rows of one resource (the Indexer
// refuses a resource with more, with ErrTooManyIndexRows). The rows grow
// with the values of a body, not its bytes: a Patient of 300,000 names
// (6.8 MB) made over a million rows, 11 s of work and 560 MB more memory,
// while holding SQLite's write lock. The bound leaves room for the largest
// Group the request size limit lets through (a reference row a member).
const MaxIndexRows = 250_000

// ErrTooManyIndexRows marks a resource with more than MaxIndexRows index
// rows.
var ErrTooManyIndexRows = errors.New("store: too many searchable values in one resource")

// Include asks for resources referenced by (Include) or referencing
// (RevInclude) the matches through a reference parameter.
// SourceType:Param[:TargetType]; Param "*" = all reference parameters.
type Include struct {
	SourceType string
	Param      string
	TargetType string
	Iterate    bool
	// NotTargetTypes, for a forward include, leaves out targets of these
	// types before the include limit counts them ($everything: the
	// patient record's own types, which come as matches).
	NotTargetTypes []string
}

// AccessFilter restricts what a search, read or history returns. It is the
// single place where access control is pushed down into SQL.
//
// The model has two forms:
//
//   - Types == nil (legacy form): every resource type is visible, limited
//     to Compartment when it is set.
//   - Types != nil (per-type form): a resource of type T is visible when
//     it satisfies at least one of the rules of Types[T], or of Types["*"]
//     when T has no entry of its own (the wildcard does not add to an
//     explicit entry: whoever builds the filter merges it in). A type with
//     no entry and no wildcard, or with an empty rule list, is invisible.
//     A rule requiring the compartment while Compartment is nil matches
//     nothing (fails closed).
//
// The filter applies to the matches of a search (so totals and paging stay
// right), to history (per version: see HistoryQuery.Filter), and to every
// resource reached through _include, _revinclude (also :iterate), chains
// and _has.
type AccessFilter struct {
	// Compartment limits results to one compartment (e.g. Patient/123):
	// in the legacy form for every type, in the per-type form for the
	// rules with Compartment set.
	Compartment *Compartment `json:",omitempty"`
	// Types gives, per resource type ("*" for any other type), the rules
	// of which a visible resource satisfies at least one; nil means the
	// legacy form.
	Types map[string][]AccessRule `json:",omitempty"`
}

// RulesFor returns f's rules for typ in the per-type form: its own, else
// the wildcard's.
func (f *AccessFilter) RulesFor(typ string) []AccessRule {
	if rs, ok := f.Types[typ]; ok {
		return rs
	}
	return f.Types["*"]
}

// MayShow reports whether f (nil: no restriction) may show some resource
// of typ: it has a rule for it, or is in the legacy form. A type with none
// (AuditEvent for a caller other than an admin) is hidden.
func (f *AccessFilter) MayShow(typ string) bool {
	return f == nil || f.Types == nil || len(f.RulesFor(typ)) > 0
}

// AccessRule is one way a resource can be visible: inside the filter's
// compartment (when Compartment is set) and satisfying every clause of
// Where (a clause being an OR of predicates). The zero rule matches every
// resource of its type. Where should hold simple index predicates (tokens,
// e.g. the categories of a granular SMART scope), not chains or _has.
type AccessRule struct {
	Compartment bool     `json:",omitempty"`
	Where       []Clause `json:",omitempty"`
}

// Compartment describes membership in a compartment: a resource of type T is
// in Patient/ID when it is that Patient, or when any of Params[T] references
// it. Types missing from Params are outside the compartment.
//
// Exclusive narrows membership to resources that belong to this
// compartment's owner alone, as writes in a patient's context need: a
// resource of type T is in it when Params[T] references Patient/ID and
// references no other resource of type Type (another Patient); a resource
// of type Type itself only when it is Patient/ID and references no other
// Patient through Params[Type] (its links).
type Compartment struct {
	Type      string
	ID        string
	Params    map[string][]string
	Exclusive bool `json:",omitempty"`
}

// Keyset is a position in the (last updated, rid) order of keyset paging.
type Keyset struct {
	// LastUpdated is in Unix milliseconds; RID is the store's row key.
	LastUpdated, RID int64
}

// SearchResult is one page of a search.
type SearchResult struct {
	Matches  []Resource
	Included []Resource
	// Total is the number of matches over all pages, or -1 when not computed.
	Total int
	// Snapshot identifies the stored ordered result for paging ("" when the
	// whole result fit on this page). Pass it back in Query.Snapshot with a
	// new Offset.
	Snapshot string
	// HasMore is true when matches exist beyond this page.
	HasMore bool
	// Next is where a keyset-paged search (Query.Keyset) continues: the
	// position of this page's last match; nil otherwise.
	Next *Keyset
}

// Analyzer is implemented by stores that can refresh the query planner's
// statistics; bulk loaders call it after a large import so that searches
// get good plans at once.
type Analyzer interface {
	Analyze(ctx context.Context) error
}

// StatsWaiter is implemented by stores that refresh the planner's
// statistics in the background after a commit made them stale; WaitStats
// returns when no refresh is running (tests call it before they compare
// plans).
type StatsWaiter interface {
	WaitStats()
}

// SearchConns is implemented by stores that can say how many searches and
// history requests their database connections run at once (the size of
// the pool that serves them), to size per-client concurrency limits.
type SearchConns interface {
	SearchConns() int
}

// IndexWriter is implemented by transactions that can replace the search
// index rows of a resource's current version without writing a new version
// (re-indexing after the extraction rules change).
type IndexWriter interface {
	// PutIndex replaces the index rows of the current version of typ/id.
	// It returns ErrNotFound when the resource does not exist or is deleted.
	PutIndex(ctx context.Context, typ, id string, ix *Index) error
}

// Creator is implemented by transactions that can store many new
// resources (every Write at version 1) in one round trip to the database.
// The audit trail's copy uses it for its batches of AuditEvents.
type Creator interface {
	// PutNew stores each write as Put would; it returns ErrConflict when
	// any of them exists already (the transaction must then be rolled
	// back), and an error when a write is not at version 1.
	PutNew(ctx context.Context, ws []*Write) error
}

// VersionIndexWriter is implemented by transactions that can replace the
// rows kept, for access filters, from the index of a superseded version
// (its tokens and local references; see HistoryQuery.Filter), e.g. for
// versions written before those rows were kept or under older extraction
// rules.
type VersionIndexWriter interface {
	// PutVersionIndex replaces the rows kept for version of typ/id with
	// those of ix. It does nothing for the current version (whose rows are
	// the index itself, see IndexWriter) and for a delete marker, and
	// returns ErrNotFound when that version does not exist.
	PutVersionIndex(ctx context.Context, typ, id string, version int64, ix *Index) error
}

// Mask returns the resources.idx_mask bits of the index tables ix has rows
// for, in the order of sqlgen.IndexTables: strings, tokens, references,
// dates, numbers, quantities, URIs.
func (ix *Index) Mask() int64 {
	var m int64
	for bit, n := range []int{len(ix.Strings), len(ix.Tokens), len(ix.References), len(ix.Dates), len(ix.Numbers), len(ix.Quantities), len(ix.URIs)} {
		if n > 0 {
			m |= 1 << bit
		}
	}
	return m
}
