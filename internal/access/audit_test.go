package access

import (
	"context"
	"errors"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

func TestAuditEventAdminOnly(t *testing.T) {
	reg, err := definitions.Load()
	if err != nil {
		t.Fatal(err)
	}
	p := NewPolicy(reg)
	as := func(scopes ...string) context.Context {
		return principal.NewContext(context.Background(), &principal.Principal{Method: "bearer", ClientID: "c", Scopes: scopes})
	}
	status := func(err error) int {
		var oe *outcome.Error
		if errors.As(err, &oe) {
			return oe.Status
		}
		if err != nil {
			return -1
		}
		return 0
	}
	data := as("system/*.cruds")
	explicit := as("system/AuditEvent.rs")
	admin := as(ScopeAdmin)
	adminData := as(ScopeAdmin, "system/*.cruds")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		op   resource.Interaction
		want int
	}{
		{"data read", data, resource.InteractionRead, 403},
		{"data search", data, resource.InteractionSearchType, 403},
		{"explicit scope read", explicit, resource.InteractionRead, 403},
		{"admin read", admin, resource.InteractionRead, 0},
		{"admin search", admin, resource.InteractionSearchType, 0},
		{"admin history", admin, resource.InteractionHistoryInstance, 0},
		{"admin create", adminData, resource.InteractionCreate, 405},
		{"admin update", adminData, resource.InteractionUpdate, 405},
		{"admin patch", adminData, resource.InteractionPatch, 405},
		{"admin delete", adminData, resource.InteractionDelete, 405},
		{"data create", data, resource.InteractionCreate, 405},
	} {
		if got := status(p.Check(tc.ctx, tc.op, AuditType)); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	// Filters: a data caller never sees AuditEvent, even with every type
	// granted; an admin does (for reads, not writes).
	for _, ctx := range []context.Context{data, explicit, as("patient/*.rs")} {
		f := p.Filter(ctx)
		if f == nil || f.Types == nil {
			t.Fatalf("filter %+v lets AuditEvent through", f)
		}
		if rs, ok := f.Types[AuditType]; !ok || len(rs) != 0 {
			t.Errorf("AuditEvent rules %+v, want none", rs)
		}
	}
	if f := p.Filter(data); len(f.Types["*"]) != 1 {
		t.Errorf("system/*.cruds filter %+v lost the other types", f)
	}
	if f := p.Filter(adminData); f != nil {
		t.Errorf("admin with every type: filter %+v, want none", f)
	}
	if f := p.Filter(admin); f == nil || len(f.Types[AuditType]) != 1 || len(f.Types) != 1 {
		t.Errorf("admin-only filter %+v, want AuditEvent only", f)
	}
	if f := p.WriteFilter(adminData); f == nil || len(f.Types[AuditType]) != 0 {
		t.Errorf("admin write filter %+v lets AuditEvent writes through", f)
	}
}
