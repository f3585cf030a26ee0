package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

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
// be priced by one and run by the other). Keys are compared decoded
// ("entr\u0079" is "entry"), as the handler's decoder compares them.
//
// The body is walked once by a byte scanner (jsonScan): pricing runs on
// every ingested Bundle, before the handler decodes it again.
func (c Costs) bundleCost(body []byte, prefix string, maxEntries int) int {
	s := jsonScan{b: body}
	if !s.open('{') {
		return c.BatchMin
	}
	for first := true; ; first = false {
		k, ok := s.member(first, '}')
		if !ok {
			return c.BatchMin
		}
		if k != "entry" {
			if !s.skip() {
				return c.BatchMin
			}
			continue
		}
		if !s.open('[') {
			return c.BatchMin
		}
		total, n := 0, 0
		// An entry list that breaks off costs the entries before the break.
		for first := true; s.more(first, ']'); first = false {
			if n++; maxEntries > 0 && n > maxEntries {
				return c.BatchMin
			}
			method, url, ok := s.entryRequest()
			if !ok {
				break
			}
			total = min(total+c.entryCost(method, url, prefix), maxBundleCost)
		}
		return max(total, c.BatchMin)
	}
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

// maxScanDepth bounds the nesting jsonScan skips (the handler refuses
// deeper documents).
const maxScanDepth = 512

// jsonScan walks a JSON document without building it. Its methods report
// false on malformed input (the handler, which decodes strictly, answers
// 400 to it; the price of such a body only has to be bounded).
type jsonScan struct {
	b []byte
	i int
	// bad is set when more or member met malformed input (rather than
	// the end of the object or array).
	bad bool
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// open consumes the delimiter d ('{' or '[').
func (s *jsonScan) open(d byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == d {
		s.i++
		return true
	}
	return false
}

// more reports whether the object or array being read has another member
// or element, consuming the separating comma, or its closing delimiter
// end when it has none (first: no member read yet).
func (s *jsonScan) more(first bool, end byte) bool {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return false
	}
	switch c := s.b[s.i]; {
	case c == end:
		s.i++
		return false
	case first:
		return true
	case c == ',':
		s.i++
		return true
	}
	s.bad = true
	return false
}

// member reads the next key of an object and its colon; ok is false at
// the object's end or on malformed input (then the caller stops).
func (s *jsonScan) member(first bool, end byte) (string, bool) {
	if !s.more(first, end) {
		return "", false
	}
	k, ok := s.str()
	s.ws()
	if !ok || s.i >= len(s.b) || s.b[s.i] != ':' {
		s.bad = true
		return "", false
	}
	s.i++
	return k, true
}

// str reads a string and returns its decoded value.
func (s *jsonScan) str() (string, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			s.i = j + 1
			raw := s.b[start+1 : j]
			if !escaped && utf8.Valid(raw) {
				return string(raw), true
			}
			var v string
			if err := json.Unmarshal(s.b[start:j+1], &v); err != nil {
				return "", false
			}
			return v, true
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// skip consumes one value of any kind.
func (s *jsonScan) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
	default:
		// A number, true, false or null: up to the next delimiter.
		j := s.i
		for j < len(s.b) && !strings.ContainsRune(",}] \t\n\r", rune(s.b[j])) {
			j++
		}
		ok := j > s.i
		s.i = j
		return ok
	}
	// Objects and arrays: nesting counted, strings skipped whole.
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '{', '[':
			if depth++; depth > maxScanDepth {
				return false
			}
			s.i++
		case '}', ']':
			s.i++
			if depth--; depth == 0 {
				return true
			}
		case '"':
			if !s.skipStr() {
				return false
			}
		default:
			s.i++
		}
	}
	return false
}

// skipStr consumes a string without decoding it.
func (s *jsonScan) skipStr() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return true
		}
	}
	return false
}

// entryRequest reads one element of a Bundle's entry array and returns
// its request.method and request.url ("" when absent or not strings).
func (s *jsonScan) entryRequest() (method, url string, ok bool) {
	if !s.open('{') {
		return "", "", s.skip()
	}
	for first := true; ; first = false {
		k, ok := s.member(first, '}')
		if !ok {
			// The entry's end, or malformed.
			return method, url, !s.bad
		}
		if k != "request" {
			if !s.skip() {
				return "", "", false
			}
			continue
		}
		if !s.open('{') {
			if !s.skip() {
				return "", "", false
			}
			continue
		}
		for first := true; ; first = false {
			k, ok := s.member(first, '}')
			if !ok {
				if s.bad {
					return "", "", false
				}
				break
			}
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '"' {
				v, ok := s.str()
				if !ok {
					return "", "", false
				}
				switch k {
				case "method":
					method = v
				case "url":
					url = v
				}
				continue
			}
			// Not a string: the member does not count (a later string
			// member of the same name still does, as before).
			switch k {
			case "method":
				method = ""
			case "url":
				url = ""
			}
			if !s.skip() {
				return "", "", false
			}
		}
	}
}
