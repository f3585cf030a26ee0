package access

import (
	"net/http"
	"slices"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

// AuditType is the resource type of the audit trail. AuditEvents are
// written by the server only: every create, update, patch and delete is
// refused (405), for admins too. Reading and searching them needs the
// admin scope ScopeAdmin (system/lapis.admin, granted only through
// client_credentials to a client registered with it); a data scope such
// as system/*.rs or system/AuditEvent.rs does not suffice. For other
// callers AuditEvents are invisible everywhere, also through _include,
// _revinclude, chains, _has and system-level search and history.
const AuditType = "AuditEvent"

// ScopeAdmin is the admin scope (the same as oauth.ScopeAdmin).
const ScopeAdmin = "system/lapis.admin"

func isAdmin(scopes []string) bool { return slices.Contains(scopes, ScopeAdmin) }

// checkAudit decides an interaction on AuditEvent.
func checkAudit(scopes []string, perm Perm) error {
	switch {
	case perm&(PermCreate|PermUpdate|PermDelete) != 0:
		return outcome.New(http.StatusMethodNotAllowed, "not-supported", "AuditEvent resources are written by the server only")
	case perm == 0:
		return nil // a Bundle: its entries are checked one by one
	case isAdmin(scopes):
		return nil
	}
	return outcome.New(http.StatusForbidden, "forbidden", "reading the audit trail requires the %s scope", ScopeAdmin)
}

// auditInteractions are the interactions on AuditEvent the server
// performs (for a caller with ScopeAdmin).
var auditInteractions = []string{"read", "vread", "history-instance", "history-type", "search-type"}

// Capability narrows the AuditEvent entry of a generated
// CapabilityStatement (a fhirapi.Config.CapabilityHook) to what the policy
// allows: reads, searches and history, no write of any kind.
func Capability(cs map[string]any) {
	rests, _ := cs["rest"].([]any)
	if len(rests) == 0 {
		return
	}
	rest, _ := rests[0].(map[string]any)
	resources, _ := rest["resource"].([]any)
	for _, r := range resources {
		m, _ := r.(map[string]any)
		if m == nil || m["type"] != AuditType {
			continue
		}
		ints := make([]any, 0, len(auditInteractions))
		for _, code := range auditInteractions {
			ints = append(ints, map[string]any{"code": code})
		}
		m["interaction"] = ints
		m["updateCreate"] = false
		m["conditionalCreate"] = false
		m["conditionalUpdate"] = false
		m["conditionalDelete"] = "not-supported"
	}
}
