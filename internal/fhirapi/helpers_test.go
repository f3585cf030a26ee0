package fhirapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/backend"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

const testBase = "http://lapis.test/fhir"

var (
	regOnce sync.Once
	regVal  *definitions.Registry
	valVal  *validate.Validator
	xVal    *extract.Extractor
	regErr  error
)

func shared(t testing.TB) (*definitions.Registry, *validate.Validator, *extract.Extractor) {
	t.Helper()
	regOnce.Do(func() {
		regVal, regErr = definitions.Load()
		if regErr != nil {
			return
		}
		valVal = validate.New(regVal)
		xVal, regErr = extract.New(regVal, testBase)
	})
	if regErr != nil {
		t.Fatal(regErr)
	}
	return regVal, valVal, xVal
}

type env struct {
	t   testing.TB
	h   http.Handler
	st  store.Store
	svc *resource.Service
}

type envOption func(*Config, *resourceConfig)

// newEnv is an environment on a new SQLite database (a copy of a
// migrated one: dbtest.StoreDir).
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEnvDir(t, dbtest.StoreDir(t), opts...)
}

// newEnvDir is newEnv on the SQLite data directory dir (which may hold a
// database already).
func newEnvDir(t testing.TB, dir string, opts ...envOption) *env {
	t.Helper()
	return newEnvStore(t, "", dir, opts...)
}

// newEnvStore is newEnv on the database dsn ("" for SQLite in dir).
func newEnvStore(t testing.TB, dsn, dir string, opts ...envOption) *env {
	t.Helper()
	reg, val, x := shared(t)
	st, err := backend.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rc := resource.Config{
		Store: st, Registry: reg, Validator: val, Indexer: x,
		Parser:  search.NewParser(reg, testBase, 100, 10),
		BaseURL: testBase,
	}
	cfg := Config{BaseURL: testBase, MaxBodyBytes: 1 << 20, SoftwareName: "Lapis", SoftwareVersion: "test"}
	for _, o := range opts {
		o(&cfg, &rc)
	}
	svc, err := resource.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, h: New(cfg, svc, reg), st: st, svc: svc}
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

// json decodes the response body into a map (fails the test otherwise).
func (r *resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object (%d): %q", r.code, r.body)
	}
	return m
}

// do runs a request. hdr is a list of "Name: value" strings. path is
// relative to the server root ("/fhir/Patient") or an absolute URL.
func (e *env) do(method, path, body string, hdr ...string) *resp {
	if strings.HasPrefix(path, "http://lapis.test") {
		path = strings.TrimPrefix(path, "http://lapis.test")
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://lapis.test"+path, rd)
	hasCT := false
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		if strings.EqualFold(strings.TrimSpace(k), "Content-Type") {
			hasCT = true
		}
	}
	if body != "" && !hasCT {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return &resp{code: rec.Code, hdr: rec.Header(), body: rec.Body.Bytes()}
}

// expect checks the status code.
func (r *resp) expect(t testing.TB, code int) *resp {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
	return r
}

// outcome checks the status and that the body is an OperationOutcome with
// at least one issue; it returns the issues.
func (r *resp) outcome(t testing.TB, code int) []any {
	t.Helper()
	r.expect(t, code)
	if ct := r.hdr.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	return issues
}

// create posts a resource and returns its id.
func (e *env) create(body string) string {
	e.t.Helper()
	r := e.do("POST", "/fhir/"+typeOf(e.t, body), body)
	r.expect(e.t, http.StatusCreated)
	return r.json(e.t)["id"].(string)
}

func typeOf(t testing.TB, body string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("bad test body: %v", err)
	}
	return m["resourceType"].(string)
}

func get(m any, path ...any) any {
	cur := m
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = mm[k]
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			cur = a[k]
		}
	}
	return cur
}

func entries(b map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := b["entry"].([]any)
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

func link(b map[string]any, rel string) string {
	list, _ := b["link"].([]any)
	for _, l := range list {
		m := l.(map[string]any)
		if m["relation"] == rel {
			return m["url"].(string)
		}
	}
	return ""
}

func pathOf(t testing.TB, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.RequestURI()
}

type resourceConfig = resource.Config
