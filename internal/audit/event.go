// Package audit records who did what, where and with what outcome: every
// FHIR interaction and every security event becomes a FHIR AuditEvent
// (IHE Basic Audit Log Patterns), chained by hash so that modification,
// deletion and reordering are detectable.
//
// The parts: Stage is the FHIR API stage that turns each request into an
// Event (writes wait until their record is durable, reads do not);
// Recorder is the Sink of a running process (bounded queue, group commit
// into this process's chain in DB, then a throttled copy into the FHIR
// store as AuditEvent resources); Render gives the BALP shape; Verify
// walks the chains; Alerter evaluates the alert rules off the request
// path. See the README's "Audit trail" for the cost design.
package audit

import (
	"context"
	"time"
)

// Kind names an auditable occurrence.
type Kind string

// Kinds of events. REST is a FHIR interaction; the others are security
// events.
const (
	KindREST           Kind = "rest"
	KindLogin          Kind = "login"
	KindLoginFailure   Kind = "login.failure"
	KindLogout         Kind = "logout"
	KindConsent        Kind = "consent"
	KindTokenIssued    Kind = "token.issued"
	KindTokenRefreshed Kind = "token.refreshed"
	KindTokenRevoked   Kind = "token.revoked"
	KindTokenFailure   Kind = "token.failure"
	KindAuthnFailure   Kind = "authn.failure"
	KindAPIKeyCreated  Kind = "apikey.created"
	KindAPIKeyUsed     Kind = "apikey.used"
	KindAPIKeyRotated  Kind = "apikey.rotated"
	KindAPIKeyRevoked  Kind = "apikey.revoked"
	KindRateLimited    Kind = "ratelimit.refused"
	KindNetworkRefused Kind = "network.refused"
	KindAdmin          Kind = "admin"
)

// Outcome is the AuditEvent.outcome code.
type Outcome string

// AuditEvent outcomes (http://hl7.org/fhir/audit-event-outcome).
const (
	OutcomeSuccess Outcome = "0"
	OutcomeMinor   Outcome = "4"
	OutcomeSerious Outcome = "8"
	OutcomeMajor   Outcome = "12"
)

// Entity is a resource or query the event is about. Query must already be
// stripped of anything that could carry a credential.
type Entity struct {
	Type    string // FHIR type, e.g. "Observation"
	ID      string
	Version string
	Role    string // e.g. "domain", "query", "patient"
	Query   string
}

// Event is one auditable occurrence. It carries identifiers of the
// credential (token jti, API key id), never the credential itself.
type Event struct {
	Time        time.Time
	Kind        Kind
	Action      string // C, R, U, D or E
	Interaction string // FHIR interaction: read, vread, search-type, create, …
	Outcome     Outcome
	Description string // short, fixed text; never request data
	Status      int    // HTTP status when there is one

	ClientID     string // OAuth client or API key owner
	Subject      string // user id
	FHIRUser     string // Patient/ID or Practitioner/ID
	Method       string // bearer, apikey, basic, password, …
	CredentialID string // jti or API key id
	Address      string // caller's network address
	UserAgent    string

	Patient  string // patient in context or searched patient (id)
	Entities []Entity
	Returned int // resources returned (searches, reads)
	// Occurrences is how many identical refusals this record stands for
	// when a Coalescer merged them (0 or 1: one).
	Occurrences int

	// The facts below feed the per-client activity (package activity);
	// they are not part of the AuditEvent record or its hash.

	// Latency is how long the request took to answer (FHIR stage).
	Latency time.Duration
	// Route is the request's route shape ("GET /fhir/Observation?…"):
	// the matched pattern, never an id or a query value (RouteShape).
	Route string
	// Cause is why the request was refused ("scope", "rate-limit", …;
	// httpx.Cause), "" when it was not or the reason is only its status.
	Cause string
}

// Sink receives events. Record must not block the caller for long and
// must not fail the request; implementations queue.
type Sink interface {
	Record(ctx context.Context, e Event)
}

// Discard is a Sink that drops every event (tests, tools).
type Discard struct{}

// Record drops e.
func (Discard) Record(context.Context, Event) {}
