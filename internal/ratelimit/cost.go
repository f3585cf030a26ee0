package ratelimit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// Costs are the cost units each kind of FHIR interaction spends.
type Costs struct {
	Read      int // read
	VRead     int // vread
	Search    int // search (type, system, _search)
	History   int // history (instance, type, system)
	Create    int
	Update    int
	Patch     int
	Delete    int
	Batch     int // per entry of a batch or transaction Bundle (a GET entry costs at least what the same read or search costs)
	BatchMin  int // least a batch or transaction costs
	Operation int // $operations
}

// DefaultCosts are the costs when none are configured.
func DefaultCosts() Costs {
	return Costs{Read: 1, VRead: 1, Search: 2, History: 2, Create: 3, Update: 3, Patch: 3, Delete: 3, Batch: 1, BatchMin: 3, Operation: 3}
}

// maxCost bounds a configured cost.
const maxCost = 10_000

// ParseCosts reads "read=1,search=2,…" over DefaultCosts. Keys: read,
// vread, search, history, create, update, patch, delete, batch (per
// entry), batch-min, operation.
func ParseCosts(s string) (Costs, error) {
	c := DefaultCosts()
	fields := map[string]*int{
		"read": &c.Read, "vread": &c.VRead, "search": &c.Search, "history": &c.History,
		"create": &c.Create, "update": &c.Update, "patch": &c.Patch, "delete": &c.Delete,
		"batch": &c.Batch, "batch-min": &c.BatchMin, "operation": &c.Operation,
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		p := fields[strings.TrimSpace(k)]
		if !ok || p == nil {
			return c, fmt.Errorf("invalid rate-limit cost %q: want KEY=N with KEY one of read, vread, search, history, create, update, patch, delete, batch, batch-min, operation", part)
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > maxCost {
			return c, fmt.Errorf("invalid rate-limit cost %q: N must be an integer from 0 to %d", part, maxCost)
		}
		*p = n
	}
	return c, nil
}

// String formats c as ParseCosts reads it.
func (c Costs) String() string {
	return fmt.Sprintf("read=%d,vread=%d,search=%d,history=%d,create=%d,update=%d,patch=%d,delete=%d,batch=%d,batch-min=%d,operation=%d",
		c.Read, c.VRead, c.Search, c.History, c.Create, c.Update, c.Patch, c.Delete, c.Batch, c.BatchMin, c.Operation)
}

// cost is the price of an interaction other than a batch or transaction
// (see bundleCost): its Kind's cost, a read for shapes no interaction has.
func (c Costs) cost(ix *interaction.Interaction) int {
	switch ix.Kind {
	case interaction.VRead:
		return c.VRead
	case interaction.SearchType, interaction.SearchSystem:
		return c.Search
	case interaction.HistoryInst, interaction.HistoryType, interaction.HistorySystem:
		return c.History
	case interaction.Create:
		return c.Create
	case interaction.Update:
		return c.Update
	case interaction.Patch:
		return c.Patch
	case interaction.Delete:
		return c.Delete
	case interaction.Batch:
		return c.BatchMin
	case interaction.Operation:
		return c.Operation
	}
	return c.Read
}

// maxBundleCost bounds the price of one Bundle (far above any burst; it
// only keeps the sum from overflowing).
const maxBundleCost = 1 << 40

// bundleCost prices a batch or transaction Bundle from its JSON body,
// without building it: every entry costs Batch, and a GET or HEAD entry
// what the same request would cost on its own when that is more (a
// search Search, a history History, a read Read…), so a Bundle of
// searches costs what the searches cost. The total is at least BatchMin.
// prefix is the path of the FHIR base ("/fhir"), to read absolute entry
// URLs. A Bundle with more than maxEntries entries (when positive) costs
// BatchMin: the handler refuses it before running any. A body that is
// not a JSON object costs BatchMin (the handler answers 400), and an
// entry list that breaks off costs the entries before the break.
//
// Members are matched exactly, as the handler matches them (encoding/json
// would also take "REQUEST" for "request"; a Bundle with both must not
// be priced by one and run by the other).
func (c Costs) bundleCost(body []byte, prefix string, maxEntries int) int {
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
			if err := skipValue(dec); err != nil {
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
			method, url, err := entryRequest(dec)
			if err != nil {
				break
			}
			total = min(total+c.entryCost(method, url, prefix), maxBundleCost)
		}
		return max(total, c.BatchMin)
	}
	return c.BatchMin
}

// entryCost prices one Bundle entry (see bundleCost).
func (c Costs) entryCost(method, rawURL, prefix string) int {
	if method != http.MethodGet && method != http.MethodHead {
		return c.Batch
	}
	path, _, _ := strings.Cut(rawURL, "?")
	if i := strings.Index(path, "://"); i >= 0 {
		// An absolute URL (the handler accepts its own base only): the
		// path after the host, below the FHIR base.
		rest := path[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			path, _ = strings.CutPrefix(rest[j:], prefix)
		} else {
			path = ""
		}
	}
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/" + strings.TrimPrefix(path, "/")}}
	return max(c.Batch, c.cost(interaction.Parse("", r)))
}

// entryRequest reads one element of a Bundle's entry array and returns
// its request.method and request.url ("" when absent or not strings).
func entryRequest(dec *json.Decoder) (method, url string, err error) {
	t, err := dec.Token()
	if err != nil {
		return "", "", err
	}
	if t != json.Delim('{') {
		return "", "", skipOpened(dec, t)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		if k != "request" {
			if err := skipValue(dec); err != nil {
				return "", "", err
			}
			continue
		}
		t, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		if t != json.Delim('{') {
			if err := skipOpened(dec, t); err != nil {
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
			if err := skipOpened(dec, v); err != nil {
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
func skipOpened(dec *json.Decoder, t json.Token) error {
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
// scanner validates it as Token would) and skipJSON keeps nothing of it,
// far cheaper than walking a large resource token by token.
func skipValue(dec *json.Decoder) error {
	return dec.Decode(&skipJSON{})
}

// skipJSON is a json.Unmarshaler that discards the value.
type skipJSON struct{}

// UnmarshalJSON discards data.
func (skipJSON) UnmarshalJSON([]byte) error { return nil }
