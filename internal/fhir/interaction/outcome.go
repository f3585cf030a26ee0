package interaction

import "context"

// Outcome is what the FHIR service did with a request, for the audit
// trail: the audit stage puts an empty one in the request context before
// the handler runs and the handler fills it in, so that nothing is
// recovered from the response bytes. The response status is the one
// written; an Outcome left empty means the handler reported nothing (an
// error, or a request refused before it ran).
type Outcome struct {
	// Resource is the version a read, vread, create, update, patch or
	// delete returned or wrote.
	Resource Ref
	// BundleType is "batch" or "transaction" for a Bundle posted to the
	// base, set as soon as the service has read it (also when it then
	// fails).
	BundleType string
	// Returned counts the resources the response returns as read: the
	// matches and includes of a search, the entries of a history, and in
	// a batch or transaction response the resources its read entries
	// return (1 for a read or vread, the Bundle entries of a search or
	// history). Resources a write echoes back were sent by the client and
	// do not count.
	Returned int
	// Written are the versions a batch or transaction wrote (its entries
	// with a response location).
	Written []Ref
	// Unchanged is set for an update or patch that changed nothing and
	// wrote no version: Resource is the current version, written before.
	Unchanged bool
}

// Ref names a resource version.
type Ref struct {
	Type, ID, Version string
}

type outcomeKey struct{}

// NewOutcomeContext returns ctx carrying o.
func NewOutcomeContext(ctx context.Context, o *Outcome) context.Context {
	return context.WithValue(ctx, outcomeKey{}, o)
}

// OutcomeFromContext returns the Outcome in ctx, nil when no stage asked
// for one.
func OutcomeFromContext(ctx context.Context) *Outcome {
	o, _ := ctx.Value(outcomeKey{}).(*Outcome)
	return o
}
