// Package httpcall sends a test's HTTP requests and reads the answers
// whole.
package httpcall

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// Result is an HTTP answer read whole.
type Result struct {
	Status int
	Header http.Header
	// Body is the answer's JSON object (nil when the body is not one),
	// Raw the body as text.
	Body map[string]any
	Raw  string
}

// Do sends req with http.DefaultClient and reads the answer; tb fails
// when the request cannot be sent.
func Do(tb testing.TB, req *http.Request) Result {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := Result{Status: resp.StatusCode, Header: resp.Header, Raw: string(b)}
	_ = json.Unmarshal(b, &r.Body)
	return r
}
