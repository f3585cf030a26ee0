package fhirapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/logbuf"
)

// FuzzHTTP sends arbitrary requests (method, path below the FHIR base,
// query, headers, body) through the real handler on a real SQLite store.
// The server must never answer 5xx (a recovered panic is a 500 too), every
// error must be an OperationOutcome, and every success body valid JSON.
// Requests that net/http itself would refuse to parse are skipped.
func FuzzHTTP(f *testing.F) {
	seeds := []struct{ method, path, query, hdr, body string }{
		{"GET", "Patient/p1", "", "", ""},
		{"GET", "Patient/p1/_history/1", "_format=json", "Accept: application/fhir+json;q=0.9, */*;q=0.1", ""},
		{"GET", "Patient/p1/_history/2", "", "If-None-Match: W/\"2\"", ""},
		{"HEAD", "Patient", "name=x&_count=2", "", ""},
		{"GET", "Patient", "_sort=-birthdate&_include=Patient:organization&_revinclude=Observation:subject&_total=accurate", "", ""},
		{"GET", "Observation", "subject:Patient.name=x&value-quantity=ge1e400||kg&_has:Observation:patient:code=1", "", ""},
		{"GET", "", "_type=Patient,Observation&_count=1", "", ""},
		{"POST", "Patient/_search", "", "Content-Type: application/x-www-form-urlencoded", "name=x&birthdate=ge2020"},
		{"GET", "_history", "_since=2020-01-01T00:00:00Z&_count=1", "", ""},
		{"GET", "Patient/_history", "_cursor=zz", "", ""},
		{"GET", "Patient/p1/_history", "", "", ""},
		{"POST", "Patient", "", "Content-Type: application/fhir+json; charset=utf-8\nPrefer: return=OperationOutcome", `{"resourceType":"Patient","name":[{"family":"A"}]}`},
		{"POST", "Patient", "", "Content-Type: application/fhir+json\nIf-None-Exist: identifier=http://h|1", `{"resourceType":"Patient"}`},
		{"PUT", "Patient/p1", "", "Content-Type: application/fhir+json\nIf-Match: W/\"2\"", `{"resourceType":"Patient","id":"p1","active":false}`},
		{"PUT", "Patient", "identifier=http://h|1", "Content-Type: application/json", `{"resourceType":"Patient","id":"p1"}`},
		{"PATCH", "Patient/p1", "", "Content-Type: application/json-patch+json", `[{"op":"add","path":"/name/-","value":{"family":"x"}},{"op":"test","path":"/id","value":"p1"}]`},
		{"PATCH", "Patient", "identifier=http://h|1", "Content-Type: application/json-patch+json", `[{"op":"move","from":"/identifier/0","path":"/identifier/01"}]`},
		{"DELETE", "Patient/p1", "", "If-Match: W/\"1\"", ""},
		{"DELETE", "Patient", "identifier=http://h|1", "", ""},
		{"POST", "", "", "Content-Type: application/fhir+json", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},"request":{"method":"POST","url":"Observation"}},{"request":{"method":"GET","url":"Patient?_include=*"}}]}`},
		{"POST", "", "", "Content-Type: application/fhir+json", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PATCH","url":"Patient/p1"},"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W10="}},{"request":{"method":"GET","url":"Patient/p1/_history/1"}}]}`},
		{"GET", "metadata", "", "Accept: application/fhir+json; fhirVersion=4.0", ""},
		{"OPTIONS", "metadata", "", "", ""},
		{"GET", "Patient/%2E%2E", "", "", ""},
		{"PUT", "Patient/a%2Fb", "", "", `{"resourceType":"Patient","id":"a/b"}`},
		{"POST", "Patient", "", "", "\xef\xbb\xbf{\"resourceType\":\"Patient\",\"active\":true,\"active\":false}"},
		{"POST", "Patient", "", "", `{"resourceType":"Patient","extension":[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]}`},
		{"GET", "Patient", "name=a;b&_count=99999999999999999999&_sort=nosuch", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.hdr, []byte(s.body))
	}
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	e := newEnv(f, func(c *Config, rc *resourceConfig) {
		c.Logger = logger
		rc.Logger = logger
		c.MaxBodyBytes = 1 << 20
		rc.MaxBundleEntries = 100
	})
	e.do("PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://h","value":"1"}]}`)
	e.do("PUT", "/fhir/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`)
	f.Fuzz(func(t *testing.T, method, path, query, hdr string, body []byte) {
		var raw strings.Builder
		target := "/fhir/" + path
		if query != "" {
			target += "?" + query
		}
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: lapis.test\r\n", method, target)
		for _, h := range strings.Split(hdr, "\n") {
			if strings.TrimSpace(h) == "" {
				continue
			}
			k, _, _ := strings.Cut(h, ":")
			if strings.EqualFold(strings.TrimSpace(k), "Content-Length") || strings.EqualFold(strings.TrimSpace(k), "Transfer-Encoding") {
				continue
			}
			raw.WriteString(strings.TrimRight(h, "\r") + "\r\n")
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
		if err != nil || req.Method == "CONNECT" {
			t.Skip() // net/http would not dispatch it
		}
		req.RemoteAddr = "192.0.2.1:1234"
		logs.Take()
		rec := httptest.NewRecorder()
		start := time.Now()
		e.h.ServeHTTP(rec, req)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%q took %v", target, d)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d\nheaders %q\nbody %q\nresponse %s\nlog: %s", method, target, rec.Code, hdr, body, rec.Body.Bytes(), logs.Take())
		}
		if method == "HEAD" || rec.Code == http.StatusNoContent || rec.Code == http.StatusNotModified {
			return
		}
		if rec.Code >= 300 {
			r := &resp{code: rec.Code, hdr: rec.Header(), body: rec.Body.Bytes()}
			checkOutcomeEcho(t, r, raw.String())
			return
		}
		if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: %d body is not JSON: %q", method, target, rec.Code, rec.Body.Bytes())
		}
	})
}
