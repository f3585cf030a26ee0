package resource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestHistoryTotalLimit: a type or system history counts at most
// HistoryTotalLimit versions for its total; past it the Bundle has no
// total (and the count costs no more), the pages are unchanged.
// _count=0 (the total alone) and an instance's history still count every
// version.
func TestHistoryTotalLimit(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		svc, _ := pagingService(t, dialect, 5, func(c *resource.Config) { c.HistoryTotalLimit = 4 })
		ctx := context.Background()
		for v := range 3 {
			if _, err := svc.Update(ctx, "Patient", "p000", []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"p000","active":%v}`, v%2 == 0)), ""); err != nil {
				t.Fatal(err)
			}
		}
		// 5 + 2 Patients, p000 3 times more: 10 versions.
		total := func(typ, id string, q url.Values) (int, bool, int) {
			t.Helper()
			p, err := svc.History(ctx, typ, id, q, true)
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				Total *int
				Entry []json.RawMessage
			}
			if err := json.Unmarshal(p.JSON(), &b); err != nil {
				t.Fatal(err)
			}
			if b.Total == nil {
				return p.Total, false, len(b.Entry)
			}
			if *b.Total != p.Total {
				t.Fatalf("Bundle total %d, page %d", *b.Total, p.Total)
			}
			return *b.Total, true, len(b.Entry)
		}
		for _, typ := range []string{"", "Patient"} {
			if n, ok, entries := total(typ, "", url.Values{"_count": {"3"}}); ok || n != -1 || entries != 3 {
				t.Errorf("%q history: total %d (in Bundle %v), %d entries; want no total, 3 entries", typ, n, ok, entries)
			}
			if n, ok, _ := total(typ, "", url.Values{"_count": {"0"}}); !ok || n != 10 {
				t.Errorf("%q history _count=0: total %d (in Bundle %v), want 10", typ, n, ok)
			}
		}
		if n, ok, _ := total("Patient", "p000", nil); !ok || n != 4 {
			t.Errorf("instance history: total %d (in Bundle %v), want 4", n, ok)
		}
		if n, ok, _ := total("Patient", "", url.Values{"_since": {"2000-01-01"}}); ok || n != -1 {
			t.Errorf("type history since: total %d (in Bundle %v)", n, ok)
		}
	})
}

// TestHistorySinceUnescapedPlus: an unescaped '+' of a _since offset
// arrives as a space, and is restored as in search dates, _since of
// $everything and $export: "T00:00:00+01:00" is an hour before
// "T00:00:00Z", not a 400.
func TestHistorySinceUnescapedPlus(t *testing.T) {
	svc, _ := pagingService(t, "sqlite", 3)
	ctx := context.Background()
	want, err := svc.History(ctx, "Patient", "", url.Values{"_since": {"2000-01-01T00:00:00+01:00"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.History(ctx, "Patient", "", url.Values{"_since": {"2000-01-01T00:00:00 01:00"}}, true)
	if err != nil {
		t.Fatalf("_since with a space for '+': %v", err)
	}
	if got.Total != want.Total || len(got.Versions) != len(want.Versions) {
		t.Errorf("_since with a space for '+': total %d, %d versions; with '+': %d, %d", got.Total, len(got.Versions), want.Total, len(want.Versions))
	}
}

// TestHistoryAt: _at lists the versions current at some time in the
// period of its value (R4 http.html#history), a version replaced before
// the period left out; its next links keep it; a bad value is refused.
func TestHistoryAt(t *testing.T) {
	svc, _ := pagingService(t, "sqlite", 3)
	ctx := context.Background()
	if _, err := svc.Update(ctx, "Patient", "p000", []byte(`{"resourceType":"Patient","id":"p000","name":[{"family":"Renamed"}]}`), ""); err != nil {
		t.Fatal(err)
	}
	next := strconv.Itoa(time.Now().UTC().Year() + 1)
	for _, c := range []struct {
		at   string
		want []string
	}{
		{next, []string{"Patient/p000/2", "Patient/x2/1", "Patient/x1/1", "Patient/p002/1", "Patient/p001/1"}},
		{"2000", nil},
	} {
		var got []string
		params := url.Values{"_at": {c.at}, "_count": {"2"}}
		for page := 0; page < 10; page++ {
			p, err := svc.History(ctx, "Patient", "", params, true)
			if err != nil {
				t.Fatalf("_at=%s: %v", c.at, err)
			}
			for _, v := range p.Versions {
				got = append(got, fmt.Sprintf("%s/%s/%d", v.Type, v.ID, v.VersionID))
			}
			params = nil
			for _, l := range p.Links {
				if l.Relation == "next" {
					u, err := url.Parse(l.URL)
					if err != nil {
						t.Fatal(err)
					}
					params = u.Query()
					if params.Get("_at") != c.at {
						t.Errorf("_at=%s: next link %s lost _at", c.at, l.URL)
					}
				}
			}
			if params == nil {
				break
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("_at=%s: got %v, want %v", c.at, got, c.want)
		}
	}
	if _, err := svc.History(ctx, "Patient", "", url.Values{"_at": {"yesterday"}}, false); err == nil || !strings.Contains(err.Error(), "invalid _at") {
		t.Errorf("_at=yesterday: %v, want invalid _at", err)
	}
}
