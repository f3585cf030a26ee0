package resource

import (
	"context"

	"github.com/lapis-health/lapis/internal/store"
)

// Interaction names a FHIR RESTful interaction, as used in
// CapabilityStatement.rest.resource.interaction.code and
// rest.interaction.code. The access seam receives one for every request.
type Interaction string

// Interactions checked through Access.Check.
const (
	InteractionRead            Interaction = "read"
	InteractionVRead           Interaction = "vread"
	InteractionUpdate          Interaction = "update"
	InteractionPatch           Interaction = "patch"
	InteractionDelete          Interaction = "delete"
	InteractionHistoryInstance Interaction = "history-instance"
	InteractionHistoryType     Interaction = "history-type"
	InteractionCreate          Interaction = "create"
	InteractionSearchType      Interaction = "search-type"
	InteractionSearchSystem    Interaction = "search-system"
	InteractionHistorySystem   Interaction = "history-system"
	InteractionTransaction     Interaction = "transaction"
	InteractionBatch           Interaction = "batch"
)

// Access is the access-control seam. The Service consults it for every
// interaction, before touching the store:
//
//   - Check is called with the interaction and the resource type ("" for
//     system-level interactions). A non-nil error aborts the interaction;
//     return an *outcome.Error (401/403) to control the response. Entries
//     of batches and transactions are checked individually, in addition to
//     the InteractionBatch/InteractionTransaction check of the Bundle.
//     Conditional create/update/delete are also checked as
//     InteractionSearchType, since they search.
//   - Filter returns the restriction pushed down into every store query
//     (searches, history, conditional matching and included resources), or
//     nil for none. Reads, vreads, updates, patches and deletes of a
//     resource outside the filter behave as if the resource did not exist
//     (404); a version that was outside the filter (an Observation since
//     corrected from another patient, or recategorised) is left out of
//     history and answers vread with 404. A create or update whose result
//     falls outside the filter is rolled back with 403. Deleted resources
//     cannot be tested against a filter, so when the filter restricts the
//     type by compartment or criteria a read of a deleted resource answers
//     404 instead of 410 (a type granted whole still answers 410).
//
// Implementations read the caller's identity from ctx (placed there by the
// authentication middleware of the HTTP layer). AllowAll is the default.
type Access interface {
	Check(ctx context.Context, op Interaction, resourceType string) error
	Filter(ctx context.Context) *store.AccessFilter
}

// AllowAll is the Access that permits everything and filters nothing.
type AllowAll struct{}

// Check always permits.
func (AllowAll) Check(context.Context, Interaction, string) error { return nil }

// Filter returns nil (no restriction).
func (AllowAll) Filter(context.Context) *store.AccessFilter { return nil }

// MatchFilterer is implemented by Access policies that let a caller read
// more than it may search (SMART r without s, or a granular s narrower
// than r). MatchFilter further restricts the matches of a search (not its
// included resources); nil means no further restriction.
type MatchFilterer interface {
	MatchFilter(ctx context.Context) *store.AccessFilter
}

// WriteFilterer is implemented by Access policies whose write permissions
// reach other resources than their read permissions (a write-only ingest
// client, say). WriteFilter restricts the resources an update, patch or
// delete may target and a create, update or patch may produce; without it
// Filter is used for writes too.
type WriteFilterer interface {
	WriteFilter(ctx context.Context) *store.AccessFilter
}
