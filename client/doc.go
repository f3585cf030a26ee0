// Package client is a Go client for FHIR R4 servers with SMART on FHIR
// authorization: Lapis, or any other FHIR server. It does not depend on
// the rest of Lapis.
//
// # Quick start
//
//	c, err := client.New("https://fhir.example.org/fhir",
//		client.WithAuth(client.APIKey(os.Getenv("LAPIS_API_KEY"))))
//	if err != nil { ... }
//	p, err := c.Read(ctx, "Patient", "123")
//	switch {
//	case client.IsNotFound(err), client.IsGone(err): ...
//	case err != nil: ...
//	}
//	for r, err := range c.SearchAll(ctx, "Observation", url.Values{"patient": {"123"}}) { ... }
//
// # FHIR interactions
//
// Read, VRead, Create, Update, Patch, Delete, History, SearchPage, Search
// (an iterator that follows the Bundles' "next" links), SearchAll (the
// same as a Go range-over-func iterator), Transaction, Batch and
// Capabilities cover the FHIR REST API; Export, ExportJob.Poll, Wait,
// Download and Cancel the Bulk Data 2.0 $export flow with resumable
// downloads; Do sends any other request with the same authentication and
// retry rules. Resources are returned as *Resource: the server's JSON
// (Raw, kept byte for byte) with its type, id, version and last-updated
// time; decode it into your own structs with Resource.Decode.
//
// Every error answer is an *Error carrying the HTTP status and the
// server's OperationOutcome; test it with IsNotFound, IsGone, IsConflict,
// IsPreconditionFailed or errors.As.
//
// # Authentication
//
// Pass one Auth with WithAuth:
//
//   - APIKey (Authorization: Bearer <key>) or APIKeyHeader (a custom header)
//   - Basic (user and password)
//   - BearerToken (a fixed token)
//   - ClientCredentials (OAuth 2.0 client credentials with a client secret)
//   - BackendServices (SMART Backend Services: private_key_jwt with RS384
//     or ES384, a fresh assertion and jti per token request)
//   - RefreshToken (the refresh token grant, with rotation reported to
//     OnRotate), typically after PKCELogin (authorization code with PKCE
//     on a loopback redirect, for CLI and native apps)
//
// The OAuth sources ([OAuth]) cache the token and reuse it until a margin
// (DefaultMargin) before it expires; when many goroutines need a new token
// at the same moment exactly one token request is sent. A 401 answer
// drops the refused token and the request is retried exactly once with a
// new one; a second 401 is an error matching ErrUnauthorized. Token
// endpoints are found by SMART discovery (Discover) when no TokenURL is
// given.
//
// # Retries and TLS
//
// Answers 429 and 503 are retried per the RetryPolicy (WithRetry),
// honouring Retry-After (seconds or an HTTP date) with a bounded wait;
// cancelling the context stops the wait. Request bodies are buffered so
// they can be replayed. Token requests of the OAuth grants
// (ClientCredentials, BackendServices, RefreshToken) follow the same
// policy: a token endpoint answering 429 or 503 is asked again after its
// Retry-After, with a fresh assertion.
//
// Certificates are verified against the system trust store, or a custom
// CA bundle (TLSConfig.CAFile, CAPEM), with TLS 1.2 as the minimum.
// Verification can only be switched off with the loudly named
// TLSConfig.InsecureSkipVerifyDangerous, which logs a warning.
//
// # Secrets
//
// Credentials and tokens never appear in error messages or log records:
// errors name the method and path of a request, never its query string
// or headers; Token and the Auth values redact themselves when printed or
// logged. Read secrets from the environment or a secrets manager, not
// from source code.
package client
