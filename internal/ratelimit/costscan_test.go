package ratelimit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// TestBundleCostScanner: the byte scanner prices every Synthea Bundle,
// and thousands of truncated and mutated copies of them, exactly as the
// encoding/json token walk it replaced (kept here as the reference).
func TestBundleCostScanner(t *testing.T) {
	c := DefaultCosts()
	files := shareddata.Glob(t, "*.json", "data", "synthea")
	rng := rand.New(rand.NewPCG(1, 2))
	mutations := []string{"{", "}", "[", "]", ",", ":", "\"", "\\", " ", "x", "1", "\"GET\"", "\"request\"", "\"entry\""}
	checked := 0
	check := func(name string, body []byte) {
		t.Helper()
		for _, max := range []int{0, 5} {
			if got, want := c.bundleCost(body, "/fhir", max), c.refBundleCost(body, "/fhir", max); got != want {
				t.Fatalf("%s (max entries %d): cost %d, reference %d\n%.300s", name, max, got, want, body)
			}
		}
		checked++
	}
	for _, f := range files[:min(len(files), 8)] {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(f, body)
		// A cut prices alike by what surrounds it, not by how far into the
		// Bundle it falls: most cuts land in the first 64 KB (dozens of
		// entries of every shape), a few anywhere in the full body.
		head := min(len(body), 64<<10)
		for i := range 50 {
			cut := rng.IntN(head)
			if i%10 == 0 {
				cut = rng.IntN(len(body))
			}
			check("truncated "+f, body[:cut])
		}
		// Small bodies exercise the entry structure more densely.
		small := body[:min(len(body), 4000)]
		for range 300 {
			b := bytes.Clone(small[:rng.IntN(len(small))])
			at := rng.IntN(len(b) + 1)
			m := mutations[rng.IntN(len(mutations))]
			b = append(b[:at], append([]byte(m), b[at:]...)...)
			check("mutated "+f, b)
		}
	}
	for _, body := range []string{
		`{"entr\u0079":[{"request":{"method":"GET","url":"Observation"}}]}`,
		`{"entry":[{"req\u0075est":{"method":"G\u0045T","url":"Observation?x=\u00e9"}}]}`,
		`{"entry":[{"request":{"method":"GET","method":1,"url":"Observation"}}]}`,
		`{"entry":[{"request":{"method":1,"method":"GET","url":"Observation"}}]}`,
		`{"entry":[{"request":{"method":"GET","url":{"a":"Observation"}}}]}`,
		`{"entry":[{"request":{"method":"GET","url":"Observation"},"request":5}]}`,
		`{"entry":[1,true,null,-2.5e3,"x",[],{}]}`,
		`{"a":[[[[{"entry":1}]]]],"entry":[{"request":{"method":"HEAD","url":"http://h/fhir/Patient/1/_history"}}]}`,
		`{"entry":[{"request":{"method":"GET","url":"Observation"}}] `,
		`{"entry":[{"request":{"method":"GET","url":"Observation"}} {"request":{"method":"GET","url":"Observation"}}]}`,
		`{"entry":[{"request":{"method":"GET" "url":"Observation"}}]}`,
		`{"entry":[{"request":{"method":"GET","url":"Observation"}}`,
		`{"entry":[{"request":{"method":"GET","url":"Observation"}},`,
		`{"entry" [{"request":{"method":"GET","url":"Observation"}}]}`,
		`[{"entry":[]}]`, ``, `{`, `{"entry":`, `{"entry":[`, `{"entry":[]}`, `{"x":1}`,
	} {
		check(body, []byte(body))
	}
	t.Logf("%d bodies priced alike", checked)
}

func (c Costs) refBundleCost(body []byte, prefix string, maxEntries int) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return c.BatchMin
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return c.BatchMin
		}
		if k != "entry" {
			if err := refSkipValue(dec); err != nil {
				return c.BatchMin
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return c.BatchMin
		}
		total, n := 0, 0
		for dec.More() {
			if n++; maxEntries > 0 && n > maxEntries {
				return c.BatchMin
			}
			method, url, err := refEntryRequest(dec)
			if err != nil {
				break
			}
			total = min(total+c.entryCost(method, url, prefix), maxBundleCost)
		}
		return max(total, c.BatchMin)
	}
	return c.BatchMin
}

// entryRequest reads one element of a Bundle's entry array and returns
// its request.method and request.url ("" when absent or not strings).
func refEntryRequest(dec *json.Decoder) (method, url string, err error) {
	t, err := dec.Token()
	if err != nil {
		return "", "", err
	}
	if t != json.Delim('{') {
		return "", "", refSkipOpened(dec, t)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		if k != "request" {
			if err := refSkipValue(dec); err != nil {
				return "", "", err
			}
			continue
		}
		t, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		if t != json.Delim('{') {
			if err := refSkipOpened(dec, t); err != nil {
				return "", "", err
			}
			continue
		}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", "", err
			}
			v, err := dec.Token()
			if err != nil {
				return "", "", err
			}
			str, _ := v.(string)
			switch k {
			case "method":
				method = str
			case "url":
				url = str
			}
			if err := refSkipOpened(dec, v); err != nil {
				return "", "", err
			}
		}
		if _, err := dec.Token(); err != nil { // '}' of request
			return "", "", err
		}
	}
	_, err = dec.Token() // '}' of the entry
	return method, url, err
}

// skipOpened finishes skipping a value whose first token t was read: the
// rest of an object or array, nothing for a scalar.
func refSkipOpened(dec *json.Decoder, t json.Token) error {
	if t != json.Delim('{') && t != json.Delim('[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// skipValue consumes one JSON value: Decode scans it in one pass (the
// scanner validates it as Token would) and refSkipJSON keeps nothing of it,
// far cheaper than walking a large resource token by token.
func refSkipValue(dec *json.Decoder) error {
	return dec.Decode(&refSkipJSON{})
}

// refSkipJSON is a json.Unmarshaler that discards the value.
type refSkipJSON struct{}

// UnmarshalJSON discards data.
func (refSkipJSON) UnmarshalJSON([]byte) error { return nil }
