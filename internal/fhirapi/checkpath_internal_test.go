package fhirapi

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// splitCheckPath is checkPath as it was written with strings.Split: the
// reference the allocation-free walk must agree with.
func splitCheckPath(p string) bool {
	if p == "" || p == "/" {
		return true
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, seg := range segs {
		if seg == "" {
			if i == len(segs)-1 {
				continue
			}
			return false
		}
		d, err := url.PathUnescape(seg)
		if err != nil || d == "." || d == ".." {
			return false
		}
	}
	return true
}

// TestCheckPathAgreesWithSplit: checkPath and reserved walk the path
// without splitting it; their answers are those of the split.
func TestCheckPathAgreesWithSplit(t *testing.T) {
	a := &API{prefix: "/fhir"}
	for _, p := range []string{"/", "/fhir", "/fhir/", "/fhir//Patient", "/fhir/Patient/1", "/fhir/Patient/1/", "/fhir/Patient//1",
		"/fhir/Patient/.", "/fhir/Patient/..", "/fhir/Patient/%2e", "/fhir/Patient/%2E%2e", "/fhir/Patient/a%20b",
		"/fhir/Patient/_history", "/fhir/_history", "/fhir/Patient/1/_history", "/fhir/_search", "/fhir/Patient/_search", "/fhir/Patient/1/_search",
		"//", "/a//", "/a/b/c/", "/./", "/x/..", "/fhir/Patient/1.2", "/fhir/Patient/+", "/fhir/Patient/%2F"} {
		r := httptest.NewRequest("GET", "http://h"+p, nil)
		if got, want := checkPath(r) == nil, splitCheckPath(r.URL.EscapedPath()); got != want {
			t.Errorf("checkPath(%q) accepts %v, want %v", p, got, want)
		}
		var want []string
		if rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/"); ok {
			if segs := strings.Split(rest, "/"); len(segs) <= 2 {
				switch segs[len(segs)-1] {
				case "_history":
					want = []string{"GET", "HEAD"}
				case "_search":
					want = []string{"POST"}
				}
			}
		}
		if got := a.reserved(r); strings.Join(got, ",") != strings.Join(want, ",") || (got == nil) != (want == nil) {
			t.Errorf("reserved(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestRouteClassLabels: the labels made once are those routeClass made
// on every request.
func TestRouteClassLabels(t *testing.T) {
	for _, k := range []interaction.Kind{interaction.Read, interaction.VRead, interaction.Update, interaction.Patch, interaction.Delete,
		interaction.Create, interaction.SearchType, interaction.SearchSystem, interaction.HistoryInst, interaction.HistoryType,
		interaction.HistorySystem, interaction.Batch, interaction.Operation, "future-kind"} {
		if got := routeClass(&interaction.Interaction{Kind: k, Method: "GET"}); got != "fhir."+string(k) {
			t.Errorf("%s: %q", k, got)
		}
		if got := routeClass(&interaction.Interaction{Kind: k, Method: "GET", Conditional: true}); got != "fhir.conditional-"+string(k) {
			t.Errorf("conditional %s: %q", k, got)
		}
	}
	for ix, want := range map[*interaction.Interaction]string{{Method: "OPTIONS", Kind: interaction.Read}: "fhir.options", {Method: "GET"}: "fhir.other",
		{Method: "GET", Kind: interaction.Capabilities}: "fhir.metadata", {Method: "GET", Kind: interaction.SearchType, Compartment: "Patient"}: "fhir.search-compartment"} {
		if got := routeClass(ix); got != want {
			t.Errorf("%+v: %q, want %q", ix, got, want)
		}
	}
}
