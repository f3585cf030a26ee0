package resource_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/lapis-health/lapis/internal/resource"
)

// TestHistoryPage: history returns a typed page — the versions as
// stored, the total and the paging links — that JSON renders as the
// history Bundle, on both dialects.
func TestHistoryPage(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		svc, _ := pagingService(t, dialect, 3)
		ctx := context.Background()
		if _, err := svc.Update(ctx, "Patient", "p000", []byte(`{"resourceType":"Patient","id":"p000","active":true}`), ""); err != nil {
			t.Fatal(err)
		}
		p, err := svc.History(ctx, "Patient", "", url.Values{"_count": {"2"}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 6 || len(p.Versions) != 2 || p.Returned() != 2 || p.Versions[0].ID != "p000" || p.Versions[0].VersionID != 2 {
			t.Fatalf("page: total %d, %d versions, first %s/%d", p.Total, len(p.Versions), p.Versions[0].ID, p.Versions[0].VersionID)
		}
		var next string
		for _, l := range p.Links {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			t.Fatalf("no next link: %+v", p.Links)
		}
		var b struct {
			Type  string
			Total int
			Link  []resource.Link
			Entry []struct {
				FullURL  string
				Resource json.RawMessage
				Request  struct{ Method, URL string }
			}
		}
		if err := json.Unmarshal(p.JSON(), &b); err != nil {
			t.Fatal(err)
		}
		if b.Type != "history" || b.Total != 6 || len(b.Entry) != 2 || len(b.Link) != len(p.Links) ||
			b.Entry[0].FullURL != "http://h/fhir/Patient/p000" || b.Entry[0].Request.Method != "PUT" || len(b.Entry[0].Resource) == 0 {
			t.Fatalf("Bundle %+v", b)
		}
	})
}
