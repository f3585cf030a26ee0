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
