package bulk

import (
	"net/http"
	"testing"
)

// TestRespondAsync: the kick-off's Prefer header is read as RFC 7240 has
// it: preference names are case-insensitive, several preferences share a
// header separated by commas, and a request may send several Prefer
// headers.
func TestRespondAsync(t *testing.T) {
	for _, c := range []struct {
		prefer []string
		want   bool
	}{
		{[]string{"respond-async"}, true},
		{[]string{"Respond-Async"}, true},
		{[]string{"respond-async, handling=lenient"}, true},
		{[]string{"handling=strict,respond-async"}, true},
		{[]string{"handling=strict", "respond-async"}, true},
		{[]string{`respond-async; foo="bar"`}, true},
		{[]string{" respond-async ,wait=10"}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"return=minimal"}, false},
		{[]string{"respond-asynchronously"}, false},
		{[]string{"x-respond-async"}, false},
		{[]string{"handling=respond-async"}, false},
	} {
		h := http.Header{}
		for _, v := range c.prefer {
			h.Add("Prefer", v)
		}
		if got := respondAsync(h); got != c.want {
			t.Errorf("Prefer %q: respondAsync = %v, want %v", c.prefer, got, c.want)
		}
	}
}
