package fhirapi

import (
	"net/http"
	"strconv"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// note fills the interaction.Outcome of r's context (the audit stage's)
// from the result of the interaction, so that the audit trail reads what
// was done from the service and not from the response bytes.
func note(r *http.Request, res *resource.Result) {
	o := interaction.OutcomeFromContext(r.Context())
	if o == nil || res == nil {
		return
	}
	if res.Resource != nil {
		o.Resource = ref(res.Resource)
	}
	o.Unchanged = res.Unchanged
	o.Returned = res.Returned
	for _, w := range res.Written {
		o.Written = append(o.Written, ref(w))
	}
}

// notePage is note for a search page: the matches and included resources
// it returns.
func notePage(r *http.Request, p *resource.SearchPage) { noteReturned(r, p.Returned()) }

// noteReturned reports the number of resources a page (search or
// history) returns as read.
func noteReturned(r *http.Request, n int) {
	if o := interaction.OutcomeFromContext(r.Context()); o != nil {
		o.Returned = n
	}
}

func ref(r *store.Resource) interaction.Ref {
	return interaction.Ref{Type: r.Type, ID: r.ID, Version: strconv.FormatInt(r.VersionID, 10)}
}
