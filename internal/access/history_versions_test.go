package access_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// historyEntries renders a history Bundle as its "Type/id/version" entries
// (in Bundle order), its total and its next link.
func historyEntries(t *testing.T, body []byte) (entries []string, total int, next string) {
	t.Helper()
	var b struct {
		ResourceType, Type string
		Total              *int
		Link               []struct{ Relation, URL string }
		Entry              []struct {
			Resource struct {
				ResourceType, ID string
				Meta             struct{ VersionID string }
			}
			Request  struct{ URL string }
			Response struct{ Etag string }
		}
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "history" || b.Total == nil {
		t.Fatalf("not a history Bundle (%v): %.300s", err, body)
	}
	entries = []string{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType == "" {
			// A delete marker: no resource, the version is in the ETag.
			v := strings.TrimSuffix(strings.TrimPrefix(e.Response.Etag, `W/"`), `"`)
			entries = append(entries, e.Request.URL+"/deleted/"+v)
			continue
		}
		entries = append(entries, e.Resource.ResourceType+"/"+e.Resource.ID+"/"+e.Resource.Meta.VersionID)
	}
	for _, l := range b.Link {
		if l.Relation == "next" {
			next = l.URL
		}
	}
	return entries, *b.Total, next
}

// historyVersions runs _history (of a resource, a type or the system) as
// the caller in ctx, following next links page by page with the given
// _count (0 = one page of the default size). It returns the sorted
// entries of all pages, and fails when a page's total disagrees with the
// number of entries served over all pages.
func historyVersions(t *testing.T, ctx context.Context, s *resource.Service, typ, id string, count int) []string {
	t.Helper()
	params := url.Values{}
	if count > 0 {
		params.Set("_count", fmt.Sprint(count))
	}
	var all []string
	var totals []int
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("history paging does not end")
		}
		res, err := s.History(ctx, typ, id, params, true)
		if err != nil {
			t.Fatalf("history %s/%s: %v", typ, id, err)
		}
		entries, total, next := historyEntries(t, res.JSON())
		if count > 0 && len(entries) > count {
			t.Errorf("page of %d entries, _count=%d", len(entries), count)
		}
		all = append(all, entries...)
		totals = append(totals, total)
		if next == "" {
			break
		}
		u, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		params = u.Query()
	}
	for _, tot := range totals {
		if tot != len(all) {
			t.Errorf("history %s/%s: totals %v, but %d entries served: %q", typ, id, totals, len(all), all)
			break
		}
	}
	sort.Strings(all)
	return all
}

// vreadStatus returns the status of a vread as the caller in ctx.
func vreadStatus(t *testing.T, ctx context.Context, s *resource.Service, typ, id string, version int64) int {
	t.Helper()
	status, _ := outcomeOf(t, ctx, s, func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		return s.VRead(ctx, typ, id, version)
	})
	return status
}

// batchHistory runs a batch of GET entries and returns, per entry, its
// status and, for history Bundles, their sorted entries.
func batchHistory(t *testing.T, ctx context.Context, s *resource.Service, urls ...string) []string {
	t.Helper()
	var entries []string
	for _, u := range urls {
		entries = append(entries, get(u))
	}
	res, err := s.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`), resource.ReturnMinimal)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage
			Response struct{ Status string }
		}
	}
	if err := json.Unmarshal(res.Body, &b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, e := range b.Entry {
		status := strings.Fields(e.Response.Status)[0]
		var head struct {
			ResourceType, ID, Type string
			Meta                   struct{ VersionID string }
		}
		json.Unmarshal(e.Resource, &head)
		switch {
		case head.ResourceType == "Bundle" && head.Type == "history":
			got, total, _ := historyEntries(t, e.Resource)
			if total != len(got) {
				t.Errorf("batch entry %s: total %d, %d entries", urls[i], total, len(got))
			}
			sort.Strings(got)
			out = append(out, status+" "+strings.Join(got, " "))
		case head.ResourceType != "":
			out = append(out, status+" "+head.ResourceType+"/"+head.ID+"/"+head.Meta.VersionID)
		default:
			out = append(out, status)
		}
	}
	return out
}

// TestHistoryVersionMembership: a version is served to a caller whose grant
// on the type is limited (to a compartment, to categories) only when that
// version itself is inside the limit, whatever the current version says:
// on vread, on instance, type and system _history (totals and paging
// included), and inside batches. A resource whose current version is
// outside the limit stays hidden whole; whole-type grants see everything.
//
// The data, on top of the matrix fixtures (every fixture at version 1):
//   - om: pb's laboratory Observation (v1), corrected to pa (v2);
//   - oc: pa's vital-signs Observation (v1), recategorised laboratory (v2);
//   - ox: pa's laboratory Observation (v1), moved to pb (v2);
//   - od: pa's laboratory Observation (v1), deleted (v2);
//   - pa: renamed (v2).
func TestHistoryVersionMembership(t *testing.T) {
	parallelDialects(t, func(t *testing.T, e *env) {
		admin := context.Background()
		put := func(typ, id, body string) {
			t.Helper()
			if _, err := e.admin.Update(admin, typ, id, []byte(body), ""); err != nil {
				t.Fatalf("%s/%s: %v", typ, id, err)
			}
		}
		put("Observation", "om", obs("om", "laboratory", "Patient/pb", ""))
		put("Observation", "om", obs("om", "laboratory", "Patient/pa", ""))
		put("Observation", "oc", obs("oc", "vital-signs", "Patient/pa", ""))
		put("Observation", "oc", obs("oc", "laboratory", "Patient/pa", ""))
		put("Observation", "ox", obs("ox", "laboratory", "Patient/pa", ""))
		put("Observation", "ox", obs("ox", "laboratory", "Patient/pb", ""))
		put("Observation", "od", obs("od", "laboratory", "Patient/pa", ""))
		if _, err := e.admin.Delete(admin, "Observation", "od", ""); err != nil {
			t.Fatal(err)
		}
		put("Patient", "pa", `{"resourceType":"Patient","id":"pa","name":[{"family":"Alpha-Renamed"}],"generalPractitioner":[{"reference":"Practitioner/dr"}]}`)

		as := func(who string) context.Context {
			return principal.NewContext(context.Background(), principals[who])
		}
		check := func(t *testing.T, name string, got, want []string) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Errorf("%s:\n got %q\nwant %q", name, got, want)
			}
		}

		// vreads checks the status of the vread of each Observation version.
		type vread struct {
			id      string
			version int64
			want    int
		}
		vreads := func(t *testing.T, ctx context.Context, cases []vread) {
			t.Helper()
			for _, c := range cases {
				if got := vreadStatus(t, ctx, e.svc, "Observation", c.id, c.version); got != c.want {
					t.Errorf("vread Observation/%s/_history/%d: %d, want %d", c.id, c.version, got, c.want)
				}
			}
		}

		// histories checks the history of Observation id, of the type and
		// of the system at each _count from 0 (the server's) to maxCount.
		histories := func(t *testing.T, ctx context.Context, maxCount int, id string, instance, typ, system []string) {
			t.Helper()
			for n := range maxCount + 1 {
				check(t, fmt.Sprintf("instance history _count=%d", n), historyVersions(t, ctx, e.svc, "Observation", id, n), instance)
				check(t, fmt.Sprintf("type history _count=%d", n), historyVersions(t, ctx, e.svc, "Observation", "", n), typ)
				check(t, fmt.Sprintf("system history _count=%d", n), historyVersions(t, ctx, e.svc, "", "", n), system)
			}
		}

		t.Run("patient", func(t *testing.T) {
			ctx := as("patient")
			vreads(t, ctx, []vread{
				{"om", 1, http.StatusNotFound}, // pb's version
				{"om", 2, http.StatusOK},
				{"om", 3, http.StatusNotFound},
				{"oc", 1, http.StatusOK},
				{"ox", 1, http.StatusNotFound}, // now pb's: hidden whole
				{"od", 1, http.StatusNotFound}, // deleted: hidden whole
			})
			if got := vreadStatus(t, ctx, e.svc, "Patient", "pa", 1); got != http.StatusOK {
				t.Errorf("vread of an earlier version of the patient itself: %d", got)
			}
			obsAll := []string{"Observation/oal/1", "Observation/oav/1", "Observation/oc/1", "Observation/oc/2", "Observation/om/2"}
			// The device is pa's; the clinic, the medication and the
			// practitioner are shared types, readable whole (the
			// residence is not).
			sys := append([]string{"Condition/ca/1", "Condition/ca2/1", "Device/dva/1", "Encounter/ea/1", "Location/clinic/1", "Medication/med/1", "MedicationRequest/mra/1"}, obsAll...)
			sys = append(sys, "Patient/pa/1", "Patient/pa/2", "Practitioner/dr/1")
			histories(t, ctx, 3, "om", []string{"Observation/om/2"}, obsAll, sys)
			check(t, "patient instance history", historyVersions(t, ctx, e.svc, "Patient", "pa", 0), []string{"Patient/pa/1", "Patient/pa/2"})
			for _, id := range []string{"ox", "od"} {
				if status, _ := outcomeOf(t, ctx, e.svc, history("Observation", id)); status != http.StatusNotFound {
					t.Errorf("history of Observation/%s: %d, want 404", id, status)
				}
			}
			check(t, "batch", batchHistory(t, ctx, e.svc,
				"Observation/om/_history/1", "Observation/om/_history/2", "Observation/om/_history",
				"Observation/_history", "_history", "Observation/ox/_history/1"),
				[]string{"404", "200 Observation/om/2", "200 Observation/om/2",
					"200 " + strings.Join(obsAll, " "), "200 " + strings.Join(sys, " "), "404"})
		})

		t.Run("granular", func(t *testing.T) {
			// Laboratory observations and problem-list conditions of pa.
			ctx := as("granular")
			vreads(t, ctx, []vread{
				{"oc", 1, http.StatusNotFound}, // vital-signs version
				{"oc", 2, http.StatusOK},
				{"om", 1, http.StatusNotFound}, // pb's version
				{"om", 2, http.StatusOK},
				{"oav", 1, http.StatusNotFound},
			})
			obsLab := []string{"Observation/oal/1", "Observation/oc/2", "Observation/om/2"}
			sys := append([]string{"Condition/ca/1"}, obsLab...)
			sys = append(sys, "Patient/pa/1", "Patient/pa/2")
			histories(t, ctx, 2, "oc", []string{"Observation/oc/2"}, obsLab, sys)
			check(t, "batch", batchHistory(t, ctx, e.svc,
				"Observation/oc/_history/1", "Observation/oc/_history/2", "Observation/oc/_history", "Observation/_history", "_history"),
				[]string{"404", "200 Observation/oc/2", "200 Observation/oc/2",
					"200 " + strings.Join(obsLab, " "), "200 " + strings.Join(sys, " ")})
		})

		t.Run("limited", func(t *testing.T) {
			// patient/Patient.rs and patient/Observation.rs: the same
			// per-version rule through explicit types.
			ctx := as("limited")
			if got := vreadStatus(t, ctx, e.svc, "Observation", "om", 1); got != http.StatusNotFound {
				t.Errorf("vread om/1: %d", got)
			}
			check(t, "system history", historyVersions(t, ctx, e.svc, "", "", 2),
				[]string{"Observation/oal/1", "Observation/oav/1", "Observation/oc/1", "Observation/oc/2", "Observation/om/2", "Patient/pa/1", "Patient/pa/2"})
		})

		t.Run("whole type", func(t *testing.T) {
			// user/*.cruds and system/*.rs see every version.
			for _, who := range []string{"user", "system-read"} {
				ctx := as(who)
				if got := vreadStatus(t, ctx, e.svc, "Observation", "om", 1); got != http.StatusOK {
					t.Errorf("%s: vread om/1: %d", who, got)
				}
				check(t, who+" instance history", historyVersions(t, ctx, e.svc, "Observation", "om", 1), []string{"Observation/om/1", "Observation/om/2"})
				check(t, who+" instance history deleted", historyVersions(t, ctx, e.svc, "Observation", "od", 0), []string{"Observation/od/1", "Observation/od/deleted/2"})
			}
		})
	})
}

// TestHistoryVersionsReindex: earlier versions whose kept rows are missing
// (written before they were kept) are hidden from compartment-limited
// callers, and Reindex restores exactly the ones that were inside.
func TestHistoryVersionsReindex(t *testing.T) {
	parallelDialects(t, func(t *testing.T, e *env) {
		admin := context.Background()
		for _, b := range []string{
			obs("om", "laboratory", "Patient/pb", ""), obs("om", "laboratory", "Patient/pa", ""),
			obs("oe", "laboratory", "Patient/pa", ""), obs("oe", "laboratory", "Patient/pa", "Practitioner/dr"),
		} {
			var h struct{ ID string }
			json.Unmarshal([]byte(b), &h)
			if _, err := e.admin.Update(admin, "Observation", h.ID, []byte(b), ""); err != nil {
				t.Fatal(err)
			}
		}
		// Forget the kept rows of the earlier versions.
		err := e.st.Update(admin, func(tx store.Tx) error {
			for _, id := range []string{"om", "oe"} {
				if err := tx.(store.VersionIndexWriter).PutVersionIndex(admin, "Observation", id, 1, &store.Index{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := principal.NewContext(context.Background(), principals["patient"])
		mine := func(id string) []string { return historyVersions(t, ctx, e.svc, "Observation", id, 0) }
		if got := mine("oe"); !slices.Equal(got, []string{"Observation/oe/2"}) {
			t.Errorf("without kept rows: %q", got)
		}
		if _, err := e.admin.Reindex(admin, []string{"Observation"}, nil); err != nil {
			t.Fatal(err)
		}
		if got := mine("oe"); !slices.Equal(got, []string{"Observation/oe/1", "Observation/oe/2"}) {
			t.Errorf("after reindex: %q", got)
		}
		if got := mine("om"); !slices.Equal(got, []string{"Observation/om/2"}) {
			t.Errorf("after reindex, another patient's version: %q", got)
		}
	})
}
