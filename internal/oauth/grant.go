package oauth

import "github.com/lapis-health/lapis/internal/oauth/tokenreq"

// Grant is what a user authorized at /authorize for one client, stored
// behind an authorization code (tokenreq.Grant).
type Grant = tokenreq.Grant

// ErrCodeInvalid means an authorization code is unknown, expired or
// already used (tokenreq.ErrCodeInvalid).
var ErrCodeInvalid = tokenreq.ErrCodeInvalid

// CodeStore keeps authorization codes, by hash only (tokenreq.CodeStore).
type CodeStore = tokenreq.CodeStore

// ContextReference is one entry of the SMART 2.2 fhirContext array
// (tokenreq.ContextReference).
type ContextReference = tokenreq.ContextReference
