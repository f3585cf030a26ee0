package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestSearchStopsOnRepeatedNextLink: a server whose next link leads back
// to a page already fetched (itself, or an earlier one) made SearchAll
// loop for ever, sending requests and yielding the same matches again;
// now the iteration ends with an error after the first repeat.
func TestSearchStopsOnRepeatedNextLink(t *testing.T) {
	for _, c := range []struct{ name, page1Next, page2Next string }{
		{"self", "/fhir/Patient?page=1", ""},
		{"cycle", "/fhir/Patient?page=2", "/fhir/Patient?page=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hits int
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits++
				next := c.page1Next
				if r.URL.Query().Get("page") == "2" {
					next = c.page2Next
				}
				writeBundle(w, map[string]any{"resourceType": "Bundle", "type": "searchset",
					"link":  []any{map[string]any{"relation": "next", "url": srv.URL + next}},
					"entry": []any{map[string]any{"resource": map[string]any{"resourceType": "Patient", "id": "a"}}}})
			}))
			defer srv.Close()
			cl := newTestClient(t, srv.URL+"/fhir")
			var got int
			var lastErr error
			for _, err := range cl.SearchAll(context.Background(), "Patient", nil) {
				if err != nil {
					lastErr = err
					break
				}
				if got++; got > 10 {
					break
				}
			}
			if lastErr == nil || got > 3 || hits > 3 {
				t.Fatalf("got %d matches in %d requests, err %v", got, hits, lastErr)
			}
		})
	}
}
