package fhirapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// setVersionHeaders assigns the header map directly: the values must be
// what Header.Set with the standard formatting gave.
func TestSetVersionHeaders(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 9, 12, 56, 854e6, time.FixedZone("x", 3600))
	for _, v := range []int64{0, 1, 63, 64, 1000, 1 << 40} {
		rec := httptest.NewRecorder()
		setVersionHeaders(rec, &resource.Result{Resource: &store.Resource{VersionID: v, LastUpdated: at}})
		h := rec.Header()
		if got, want := h.Get("ETag"), resource.ETag(v); got != want || len(h.Values("ETag")) != 1 {
			t.Errorf("v%d: ETag %q, want %q", v, got, want)
		}
		if got, want := h.Get("Last-Modified"), at.UTC().Format(http.TimeFormat); got != want || got != "Mon, 23 Nov 2026 08:12:56 GMT" {
			t.Errorf("v%d: Last-Modified %q, want %q", v, got, want)
		}
		h.Add("ETag", "x") // the two values do not share an array
		if h.Get("Last-Modified") != "Mon, 23 Nov 2026 08:12:56 GMT" {
			t.Errorf("v%d: Add to ETag changed Last-Modified", v)
		}
	}
	rec := httptest.NewRecorder()
	setVersionHeaders(rec, &resource.Result{})
	if len(rec.Header()) != 0 {
		t.Errorf("no resource: headers %v", rec.Header())
	}
}
