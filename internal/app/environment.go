package app

import (
	"net/http"

	"github.com/lapis-health/lapis/internal/activity"
	"github.com/lapis-health/lapis/internal/admin"
	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/ratelimit"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/server"
)

// Environment is one complete FHIR + authorization stack of a server:
// production at [base-url]/fhir, the sandbox at [base-url]/sandbox/fhir.
// Each has its own database handle, and in it its own data, clients, API
// keys, signing keys, audit chain and export jobs; its authorization
// server's issuer is its FHIR base, so a credential of one environment
// is refused (401) by the other.
type Environment struct {
	// Name is "production" or "sandbox".
	Name string
	// FHIRBase is the absolute FHIR base URL (the OAuth issuer).
	FHIRBase string
	// DB is the environment's database handle.
	DB *database.DB
	// Service is the environment's FHIR resource service (with access
	// control).
	Service *resource.Service
	// Admin is the admin service on the environment's authorization
	// database (its actions recorded in the environment's audit trail).
	Admin *admin.Service
	// Auth is the environment's authorization server.
	Auth *oauth.Server
	// Audit is the environment's audit sink.
	Audit audit.Sink
	// Activity is the environment's per-client activity (requests over
	// time, recent requests, refusals; nil with the audit trail off).
	Activity *activity.Store
	// RateLimits tells a credential's rate-limit budget in use (nil when
	// rate limits are off).
	RateLimits *ratelimit.Middleware
	// App is the environment's store and service.
	App *App

	gw      *gateway
	handler http.Handler
	ready   []server.Check
}
