package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

// fakeFHIR is a small in-memory FHIR server for the SDK's tests: create,
// read, vread, update (If-Match), JSON Patch (replace/add on top-level
// elements), delete, history, search with paging (_count, next links) and
// transaction/batch of creates.
type fakeFHIR struct {
	mu       sync.Mutex
	nextID   int
	versions map[string][]json.RawMessage // "Type/id" → versions (nil = deleted)
	order    []string
	requests []string // "METHOD path?query"
	// auth, when set, is checked before each request; a false answer is a
	// 401.
	auth func(r *http.Request) bool
}

func newFakeFHIR() *fakeFHIR { return &fakeFHIR{versions: map[string][]json.RawMessage{}} }

func (f *fakeFHIR) start(t *testing.T) (*httptest.Server, string) {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv, srv.URL + "/fhir"
}

func outcomeJSON(code, diag string) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{"severity": "error", "code": code, "diagnostics": diag}}})
	return b
}

func writeOutcome(w http.ResponseWriter, status int, code, diag string) {
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(status)
	w.Write(outcomeJSON(code, diag))
}

func (f *fakeFHIR) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	auth := f.auth
	f.mu.Unlock()
	if auth != nil && !auth(r) {
		writeOutcome(w, 401, "login", "invalid token")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/fhir")
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		parts = nil
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == "POST" && len(parts) == 0:
		f.bundle(w, body)
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "metadata":
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1"}`))
	case r.Method == "GET" && len(parts) == 1:
		f.search(w, r, parts[0])
	case r.Method == "POST" && len(parts) == 1:
		status, loc, out, oo := f.create(parts[0], body, r.Header.Get("If-None-Exist"))
		f.answer(w, r, status, loc, out, oo)
	case r.Method == "GET" && len(parts) == 2:
		f.read(w, parts[0], parts[1], "")
	case r.Method == "GET" && len(parts) == 4 && parts[2] == "_history":
		f.read(w, parts[0], parts[1], parts[3])
	case r.Method == "GET" && len(parts) == 3 && parts[2] == "_history":
		f.history(w, parts[0]+"/"+parts[1])
	case r.Method == "PUT" && len(parts) == 2:
		f.update(w, r, parts[0], parts[1], body)
	case r.Method == "PATCH" && len(parts) == 2:
		f.patch(w, r, parts[0], parts[1], body)
	case r.Method == "DELETE" && len(parts) == 2:
		f.mu.Lock()
		key := parts[0] + "/" + parts[1]
		vs, ok := f.versions[key]
		if ok && vs[len(vs)-1] != nil {
			f.versions[key] = append(vs, nil)
		}
		f.mu.Unlock()
		if !ok {
			writeOutcome(w, 404, "not-found", "no "+key)
			return
		}
		w.WriteHeader(204)
	default:
		writeOutcome(w, 400, "not-supported", "unsupported by the fake")
	}
}

// stamp sets id and meta on a resource.
func stamp(body []byte, id string, version int) json.RawMessage {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	_ = d.Decode(&m)
	m["id"] = id
	m["meta"] = map[string]any{"versionId": strconv.Itoa(version), "lastUpdated": "2026-01-02T03:04:05.678Z"}
	b, _ := json.Marshal(m)
	return b
}

func (f *fakeFHIR) create(typ string, body []byte, ifNoneExist string) (int, string, json.RawMessage, []byte) {
	var head struct{ ResourceType string }
	if json.Unmarshal(body, &head) != nil || head.ResourceType != typ {
		return 400, "", nil, outcomeJSON("invalid", "resourceType does not match the URL")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ifNoneExist != "" {
		for _, key := range f.order {
			vs := f.versions[key]
			cur := vs[len(vs)-1]
			if strings.HasPrefix(key, typ+"/") && cur != nil && bytes.Contains(cur, []byte(strings.SplitN(ifNoneExist, "=", 2)[1])) {
				return 200, key + "/_history/" + strconv.Itoa(len(vs)), cur, nil
			}
		}
	}
	f.nextID++
	id := fmt.Sprintf("r%d", f.nextID)
	key := typ + "/" + id
	out := stamp(body, id, 1)
	f.versions[key] = []json.RawMessage{out}
	f.order = append(f.order, key)
	return 201, key + "/_history/1", out, nil
}

func (f *fakeFHIR) answer(w http.ResponseWriter, r *http.Request, status int, loc string, out json.RawMessage, oo []byte) {
	w.Header().Set("Content-Type", fhirJSON)
	if oo != nil {
		w.WriteHeader(status)
		w.Write(oo)
		return
	}
	base := "http://" + r.Host + "/fhir/"
	w.Header().Set("Location", base+loc)
	v := loc[strings.LastIndex(loc, "/")+1:]
	w.Header().Set("ETag", `W/"`+v+`"`)
	w.Header().Set("Last-Modified", "Fri, 02 Jan 2026 03:04:05 GMT")
	w.WriteHeader(status)
	if r.Header.Get("Prefer") != "return=minimal" {
		w.Write(out)
	}
}

func (f *fakeFHIR) read(w http.ResponseWriter, typ, id, vid string) {
	f.mu.Lock()
	vs, ok := f.versions[typ+"/"+id]
	f.mu.Unlock()
	if !ok {
		writeOutcome(w, 404, "not-found", "Resource "+typ+"/"+id+" is not known")
		return
	}
	cur := vs[len(vs)-1]
	if vid != "" {
		n, err := strconv.Atoi(vid)
		if err != nil || n < 1 || n > len(vs) {
			writeOutcome(w, 404, "not-found", "no such version")
			return
		}
		cur = vs[n-1]
	}
	if cur == nil {
		writeOutcome(w, 410, "deleted", "Resource "+typ+"/"+id+" was deleted")
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("ETag", `W/"`+strconv.Itoa(len(vs))+`"`)
	w.Write(cur)
}

func (f *fakeFHIR) update(w http.ResponseWriter, r *http.Request, typ, id string, body []byte) {
	key := typ + "/" + id
	f.mu.Lock()
	vs := f.versions[key]
	if im := r.Header.Get("If-Match"); im != "" && im != `W/"`+strconv.Itoa(len(vs))+`"` {
		f.mu.Unlock()
		writeOutcome(w, 412, "conflict", "version conflict")
		return
	}
	out := stamp(body, id, len(vs)+1)
	if vs == nil {
		f.order = append(f.order, key)
	}
	f.versions[key] = append(vs, out)
	n := len(vs) + 1
	f.mu.Unlock()
	status := 200
	if n == 1 {
		status = 201
	}
	f.answer(w, r, status, key+"/_history/"+strconv.Itoa(n), out, nil)
}

func (f *fakeFHIR) patch(w http.ResponseWriter, r *http.Request, typ, id string, body []byte) {
	if r.Header.Get("Content-Type") != "application/json-patch+json" {
		writeOutcome(w, 415, "not-supported", "need JSON Patch")
		return
	}
	var ops []struct {
		Op, Path string
		Value    any
	}
	if json.Unmarshal(body, &ops) != nil {
		writeOutcome(w, 400, "invalid", "bad patch")
		return
	}
	key := typ + "/" + id
	f.mu.Lock()
	vs := f.versions[key]
	if len(vs) == 0 || vs[len(vs)-1] == nil {
		f.mu.Unlock()
		writeOutcome(w, 404, "not-found", "no "+key)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(vs[len(vs)-1], &m)
	for _, op := range ops {
		m[strings.TrimPrefix(op.Path, "/")] = op.Value
	}
	b, _ := json.Marshal(m)
	out := stamp(b, id, len(vs)+1)
	f.versions[key] = append(vs, out)
	n := len(vs) + 1
	f.mu.Unlock()
	f.answer(w, r, 200, key+"/_history/"+strconv.Itoa(n), out, nil)
}

func (f *fakeFHIR) history(w http.ResponseWriter, key string) {
	f.mu.Lock()
	vs := f.versions[key]
	f.mu.Unlock()
	var entries []any
	for i := len(vs) - 1; i >= 0; i-- {
		e := map[string]any{"fullUrl": key, "request": map[string]any{"method": "PUT", "url": key}}
		if vs[i] != nil {
			e["resource"] = vs[i]
		} else {
			e["request"] = map[string]any{"method": "DELETE", "url": key}
		}
		entries = append(entries, e)
	}
	writeBundle(w, map[string]any{"resourceType": "Bundle", "type": "history", "total": len(vs), "entry": entries})
}

func writeBundle(w http.ResponseWriter, b any) {
	w.Header().Set("Content-Type", fhirJSON)
	json.NewEncoder(w).Encode(b)
}

// search returns every current resource of typ, paged by _count with
// _offset; name=X keeps resources whose JSON contains X.
func (f *fakeFHIR) search(w http.ResponseWriter, r *http.Request, typ string) {
	q := r.URL.Query()
	count, _ := strconv.Atoi(q.Get("_count"))
	if count <= 0 {
		count = 2
	}
	offset, _ := strconv.Atoi(q.Get("_offset"))
	f.mu.Lock()
	var match []json.RawMessage
	for _, key := range f.order {
		vs := f.versions[key]
		cur := vs[len(vs)-1]
		if !strings.HasPrefix(key, typ+"/") || cur == nil {
			continue
		}
		if n := q.Get("name"); n != "" && !bytes.Contains(bytes.ToLower(cur), []byte(strings.ToLower(n))) {
			continue
		}
		match = append(match, cur)
	}
	f.mu.Unlock()
	base := "http://" + r.Host + "/fhir/" + typ
	links := []any{map[string]any{"relation": "self", "url": base + "?" + r.URL.RawQuery}}
	end := min(offset+count, len(match))
	if end < len(match) {
		nq := r.URL.Query()
		nq.Set("_offset", strconv.Itoa(end))
		nq.Set("_count", strconv.Itoa(count))
		links = append(links, map[string]any{"relation": "next", "url": base + "?" + nq.Encode()})
	}
	var entries []any
	for _, m := range match[min(offset, len(match)):end] {
		entries = append(entries, map[string]any{"resource": m, "search": map[string]any{"mode": "match"}})
	}
	if q.Get("_include") != "" && len(entries) > 0 {
		entries = append(entries, map[string]any{"resource": json.RawMessage(`{"resourceType":"Organization","id":"inc"}`), "search": map[string]any{"mode": "include"}})
	}
	writeBundle(w, map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(match), "link": links, "entry": entries})
}

// bundle processes a transaction or batch of POST entries.
func (f *fakeFHIR) bundle(w http.ResponseWriter, body []byte) {
	var b struct {
		ResourceType, Type string
		Entry              []struct {
			Resource json.RawMessage
			Request  struct{ Method, URL string }
		}
	}
	if json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" {
		writeOutcome(w, 400, "invalid", "not a Bundle")
		return
	}
	var entries []any
	for _, e := range b.Entry {
		if e.Request.Method != "POST" {
			if b.Type == "transaction" {
				writeOutcome(w, 400, "not-supported", "only POST entries")
				return
			}
			entries = append(entries, map[string]any{"response": map[string]any{"status": "400 Bad Request", "outcome": json.RawMessage(outcomeJSON("not-supported", "only POST entries"))}})
			continue
		}
		status, loc, _, _ := f.create(e.Request.URL, e.Resource, "")
		entries = append(entries, map[string]any{"response": map[string]any{"status": strconv.Itoa(status) + " Created", "location": loc, "etag": `W/"1"`, "lastModified": "2026-01-02T03:04:05Z"}})
	}
	writeBundle(w, map[string]any{"resourceType": "Bundle", "type": b.Type + "-response", "entry": entries})
}

// recordSleeps replaces the client's sleep with one that records the
// waits and returns at once.
func recordSleeps(c *Client) *[]time.Duration { return recordWaits(&c.sleep) }

// recordWaits replaces the sleep function *sleep with one that records the
// waits and returns at once.
func recordWaits(sleep *func(ctx context.Context, d time.Duration) error) *[]time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	*sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return &waits
}

// logBuffer is a goroutine-safe buffer for captured logs.
type logBuffer struct{ logbuf.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
