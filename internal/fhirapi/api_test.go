package fhirapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const patientBody = `{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"%s"}],"name":[{"family":"%s","given":["Ann"]}],"birthDate":"1980-01-02","active":true}`

func patient(mrn, family string) string { return fmt.Sprintf(patientBody, mrn, family) }

func TestMetadata(t *testing.T) {
	t.Parallel()
	hooked := false
	e := newEnv(t, func(c *Config, _ *resourceConfig) {
		c.CapabilityHook = func(cs map[string]any) {
			hooked = true
			rest := cs["rest"].([]any)[0].(map[string]any)
			rest["security"] = map[string]any{"cors": true}
		}
		c.Middleware = func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
			})
		}
	})
	// The statement is made when first served, not by New.
	if hooked {
		t.Fatal("CapabilityHook called before /metadata was asked for")
	}
	r := e.do("GET", "/fhir/metadata", "").expect(t, http.StatusOK)
	if !hooked {
		t.Fatal("CapabilityHook not called")
	}
	if r.hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("no CORS header on /metadata")
	}
	cs := r.json(t)
	if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" || cs["kind"] != "instance" {
		t.Fatalf("bad CapabilityStatement header: %v %v %v", cs["resourceType"], cs["fhirVersion"], cs["kind"])
	}
	if get(cs, "implementation", "url") != testBase || get(cs, "software", "name") != "Lapis" {
		t.Error("implementation/software wrong")
	}
	rest := get(cs, "rest", 0).(map[string]any)
	if rest["mode"] != "server" || get(rest, "security", "cors") != true {
		t.Error("rest mode / hook security missing")
	}
	var pat map[string]any
	for _, res := range rest["resource"].([]any) {
		if m := res.(map[string]any); m["type"] == "Patient" {
			pat = m
		}
	}
	if pat == nil {
		t.Fatal("no Patient in CapabilityStatement")
	}
	codes := map[string]bool{}
	for _, i := range pat["interaction"].([]any) {
		codes[i.(map[string]any)["code"].(string)] = true
	}
	for _, c := range []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"} {
		if !codes[c] {
			t.Errorf("Patient lacks interaction %s", c)
		}
	}
	if pat["versioning"] != "versioned" || pat["conditionalDelete"] != "single" || pat["updateCreate"] != true {
		t.Error("Patient flags wrong")
	}
	foundName := false
	for _, sp := range pat["searchParam"].([]any) {
		m := sp.(map[string]any)
		if m["name"] == "name" && m["type"] == "string" && m["definition"] == "http://hl7.org/fhir/SearchParameter/Patient-name" {
			foundName = true
		}
	}
	if !foundName {
		t.Error("Patient searchParam name missing")
	}
	e.do("OPTIONS", "/fhir/metadata", "").expect(t, http.StatusNoContent)
	e.do("DELETE", "/fhir/metadata", "").outcome(t, http.StatusMethodNotAllowed)
	e.do("GET", "/fhir/metadata", "", "Accept: application/fhir+xml").outcome(t, http.StatusNotAcceptable)
	// Everything else goes through the middleware.
	e.do("GET", "/fhir/Patient", "").expect(t, http.StatusUnauthorized)
}

// TestMetadataFirstUseConcurrent: concurrent first /metadata requests
// (the statement is made on first use) make it once and all serve the
// same statement; run under -race, a lazy build that is not synchronised
// fails here.
func TestMetadataFirstUseConcurrent(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	e := newEnv(t, func(c *Config, _ *resourceConfig) {
		c.CapabilityHook = func(map[string]any) { calls.Add(1) }
	})
	const n = 8
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			bodies[i] = e.do("GET", "/fhir/metadata", "").expect(t, http.StatusOK).body
		})
	}
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Errorf("CapabilityHook called %d times, want once", c)
	}
	for i := range bodies {
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("request %d served another statement", i)
		}
	}
}

func TestCreateReadVRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"resourceType":"Observation","id":"client-id","status":"final","code":{"text":"weight"},"valueQuantity":{"value":72.500,"unit":"kg"},"meta":{"versionId":"99","lastUpdated":"2001-01-01T00:00:00Z"}}`
	r := e.do("POST", "/fhir/Observation", body).expect(t, http.StatusCreated)
	m := r.json(t)
	id := m["id"].(string)
	if id == "client-id" || len(id) < 16 {
		t.Fatalf("server id not assigned: %q", id)
	}
	if !strings.Contains(string(r.body), `"value":72.500`) {
		t.Errorf("decimal not kept exactly: %s", r.body)
	}
	if get(m, "meta", "versionId") != "1" {
		t.Errorf("versionId %v", get(m, "meta", "versionId"))
	}
	lu := get(m, "meta", "lastUpdated").(string)
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", lu); err != nil {
		t.Errorf("lastUpdated %q not a millisecond UTC instant", lu)
	}
	if r.hdr.Get("ETag") != `W/"1"` {
		t.Errorf("ETag %q", r.hdr.Get("ETag"))
	}
	if loc := r.hdr.Get("Location"); loc != testBase+"/Observation/"+id+"/_history/1" {
		t.Errorf("Location %q", loc)
	}
	lm, err := http.ParseTime(r.hdr.Get("Last-Modified"))
	if err != nil {
		t.Errorf("Last-Modified %q", r.hdr.Get("Last-Modified"))
	}
	lut, _ := time.Parse(time.RFC3339, lu)
	if !lm.Equal(lut.Truncate(time.Second)) {
		t.Errorf("Last-Modified %v != lastUpdated %v", lm, lut)
	}
	if ct := r.hdr.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}

	t.Run("read", func(t *testing.T) {
		r := e.do("GET", "/fhir/Observation/"+id, "").expect(t, http.StatusOK)
		if r.hdr.Get("ETag") != `W/"1"` || r.json(t)["id"] != id {
			t.Fatalf("read: %s", r.body)
		}
	})
	t.Run("If-None-Match 304", func(t *testing.T) {
		e.do("GET", "/fhir/Observation/"+id, "", `If-None-Match: W/"1"`).expect(t, http.StatusNotModified)
		e.do("GET", "/fhir/Observation/"+id, "", `If-None-Match: W/"2"`).expect(t, http.StatusOK)
	})
	t.Run("If-Modified-Since 304", func(t *testing.T) {
		future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
		e.do("GET", "/fhir/Observation/"+id, "", "If-Modified-Since: "+future).expect(t, http.StatusNotModified)
		e.do("GET", "/fhir/Observation/"+id, "", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT").expect(t, http.StatusOK)
	})
	t.Run("HEAD", func(t *testing.T) {
		r := e.do("HEAD", "/fhir/Observation/"+id, "").expect(t, http.StatusOK)
		if len(r.body) != 0 || r.hdr.Get("ETag") != `W/"1"` {
			t.Fatalf("HEAD: %q", r.body)
		}
	})
	t.Run("vread", func(t *testing.T) {
		e.do("GET", "/fhir/Observation/"+id+"/_history/1", "").expect(t, http.StatusOK)
		e.do("GET", "/fhir/Observation/"+id+"/_history/2", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Observation/"+id+"/_history/x", "").outcome(t, http.StatusNotFound)
	})
	t.Run("unknown id 404", func(t *testing.T) {
		e.do("GET", "/fhir/Observation/nope", "").outcome(t, http.StatusNotFound)
	})
	t.Run("invalid id 400", func(t *testing.T) {
		e.do("GET", "/fhir/Observation/bad_id!", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/Observation/"+strings.Repeat("a", 65), "").outcome(t, http.StatusBadRequest)
	})
	t.Run("unknown type 404", func(t *testing.T) {
		e.do("GET", "/fhir/Nonsense/1", "").outcome(t, http.StatusNotFound)
		e.do("GET", "/fhir/Nonsense", "").outcome(t, http.StatusNotFound)
		e.do("POST", "/fhir/Nonsense", `{"resourceType":"Nonsense"}`).outcome(t, http.StatusNotFound)
	})
	t.Run("_pretty", func(t *testing.T) {
		r := e.do("GET", "/fhir/Observation/"+id+"?_pretty=true", "").expect(t, http.StatusOK)
		if !strings.Contains(string(r.body), "\n  \"id\"") {
			t.Fatalf("not indented: %s", r.body)
		}
	})
	t.Run("_format json", func(t *testing.T) {
		e.do("GET", "/fhir/Observation/"+id+"?_format=json", "").expect(t, http.StatusOK)
		e.do("GET", "/fhir/Observation/"+id+"?_format=application/fhir%2Bjson", "").expect(t, http.StatusOK)
	})
}

func TestSummaryElementsOnRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"},"name":[{"family":"X"}],"photo":[{"contentType":"image/png"}],"birthDate":"2000-01-01"}`)
	subsetted := func(m map[string]any) bool {
		for _, tag := range get(m, "meta", "tag").([]any) {
			if tag.(map[string]any)["code"] == "SUBSETTED" {
				return true
			}
		}
		return false
	}
	m := e.do("GET", "/fhir/Patient/"+id+"?_summary=true", "").expect(t, http.StatusOK).json(t)
	if m["photo"] != nil || m["text"] != nil || m["name"] == nil || !subsetted(m) {
		t.Errorf("_summary=true: %v", m)
	}
	m = e.do("GET", "/fhir/Patient/"+id+"?_summary=text", "").expect(t, http.StatusOK).json(t)
	if m["text"] == nil || m["name"] != nil || !subsetted(m) {
		t.Errorf("_summary=text: %v", m)
	}
	m = e.do("GET", "/fhir/Patient/"+id+"?_elements=birthDate", "").expect(t, http.StatusOK).json(t)
	if m["birthDate"] == nil || m["name"] != nil || m["id"] != id || !subsetted(m) {
		t.Errorf("_elements: %v", m)
	}
	e.do("GET", "/fhir/Patient/"+id+"?_summary=bogus", "").outcome(t, http.StatusBadRequest)
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(patient("1", "Smith"))
	upd := func(id, family string) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":"%s","name":[{"family":"%s"}]}`, id, family)
	}
	t.Run("ok", func(t *testing.T) {
		r := e.do("PUT", "/fhir/Patient/"+id, upd(id, "Jones")).expect(t, http.StatusOK)
		if r.hdr.Get("ETag") != `W/"2"` || get(r.json(t), "meta", "versionId") != "2" {
			t.Fatalf("update: %s %s", r.hdr.Get("ETag"), r.body)
		}
		if r.hdr.Get("Content-Location") != testBase+"/Patient/"+id+"/_history/2" {
			t.Errorf("Content-Location %q", r.hdr.Get("Content-Location"))
		}
	})
	t.Run("create with client id", func(t *testing.T) {
		r := e.do("PUT", "/fhir/Patient/client-1", upd("client-1", "New")).expect(t, http.StatusCreated)
		if r.hdr.Get("Location") != testBase+"/Patient/client-1/_history/1" {
			t.Errorf("Location %q", r.hdr.Get("Location"))
		}
	})
	t.Run("id mismatch 400", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/"+id, upd("other", "X")).outcome(t, http.StatusBadRequest)
	})
	t.Run("missing id 400", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/"+id, `{"resourceType":"Patient"}`).outcome(t, http.StatusBadRequest)
	})
	t.Run("type mismatch 400", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/"+id, `{"resourceType":"Observation","id":"`+id+`"}`).outcome(t, http.StatusBadRequest)
	})
	t.Run("If-Match", func(t *testing.T) {
		e.do("PUT", "/fhir/Patient/"+id, upd(id, "A"), `If-Match: W/"1"`).outcome(t, http.StatusPreconditionFailed)
		e.do("PUT", "/fhir/Patient/"+id, upd(id, "A"), `If-Match: W/"2"`).expect(t, http.StatusOK)
		e.do("PUT", "/fhir/Patient/"+id, upd(id, "A"), `If-Match: garbage`).outcome(t, http.StatusBadRequest)
		e.do("PUT", "/fhir/Patient/never", upd("never", "A"), `If-Match: W/"1"`).outcome(t, http.StatusPreconditionFailed)
	})
	t.Run("invalid resource 400 with expression", func(t *testing.T) {
		issues := e.do("PUT", "/fhir/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","birthDate":"not-a-date","bogus":1}`).outcome(t, http.StatusBadRequest)
		exprs := ""
		for _, is := range issues {
			b, _ := json.Marshal(is.(map[string]any)["expression"])
			exprs += string(b)
		}
		if !strings.Contains(exprs, "birthDate") || !strings.Contains(exprs, "bogus") {
			t.Errorf("expressions %s", exprs)
		}
	})
	t.Run("conditional update", func(t *testing.T) {
		// 0 matches: create.
		r := e.do("PUT", "/fhir/Patient?identifier=http://example.org/mrn|cu-1", patient("cu-1", "Cond")).expect(t, http.StatusCreated)
		cid := r.json(t)["id"].(string)
		// 1 match: update it.
		r = e.do("PUT", "/fhir/Patient?identifier=http://example.org/mrn|cu-1", patient("cu-1", "Cond2")).expect(t, http.StatusOK)
		if r.json(t)["id"] != cid || r.hdr.Get("ETag") != `W/"2"` {
			t.Fatalf("conditional update did not update %s: %s", cid, r.body)
		}
		// 1 match, different body id: 400.
		e.do("PUT", "/fhir/Patient?identifier=http://example.org/mrn|cu-1", `{"resourceType":"Patient","id":"zzz","identifier":[{"system":"http://example.org/mrn","value":"cu-1"}]}`).outcome(t, http.StatusBadRequest)
		// 0 matches with body id: create with that id.
		r = e.do("PUT", "/fhir/Patient?identifier=http://example.org/mrn|cu-2", `{"resourceType":"Patient","id":"cu2","identifier":[{"system":"http://example.org/mrn","value":"cu-2"}]}`).expect(t, http.StatusCreated)
		if r.json(t)["id"] != "cu2" {
			t.Fatalf("id %v", r.json(t)["id"])
		}
		// many matches: 412.
		e.create(patient("dup", "D"))
		e.create(patient("dup", "D"))
		e.do("PUT", "/fhir/Patient?identifier=http://example.org/mrn|dup", patient("dup", "D")).outcome(t, http.StatusPreconditionFailed)
		// no criteria: 400; unknown parameter: 400.
		e.do("PUT", "/fhir/Patient", patient("x", "x")).outcome(t, http.StatusBadRequest)
		e.do("PUT", "/fhir/Patient?bogus=1", patient("x", "x")).outcome(t, http.StatusBadRequest)
	})
}

func TestConditionalCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := "If-None-Exist: identifier=http://example.org/mrn|cc-1"
	r := e.do("POST", "/fhir/Patient", patient("cc-1", "A"), h).expect(t, http.StatusCreated)
	id := r.json(t)["id"].(string)
	r = e.do("POST", "/fhir/Patient", patient("cc-1", "A"), h).expect(t, http.StatusOK)
	if r.json(t)["id"] != id {
		t.Fatalf("conditional create returned another resource")
	}
	e.create(patient("cc-1", "B"))
	e.do("POST", "/fhir/Patient", patient("cc-1", "A"), h).outcome(t, http.StatusPreconditionFailed)
	e.do("POST", "/fhir/Patient", patient("cc-1", "A"), "If-None-Exist: bogus=1").outcome(t, http.StatusBadRequest)
}

func TestDeleteAndHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(patient("d-1", "Del"))
	e.do("PUT", "/fhir/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":false}`, id)).expect(t, http.StatusOK)
	r := e.do("DELETE", "/fhir/Patient/"+id, "").expect(t, http.StatusNoContent)
	if len(r.body) != 0 || r.hdr.Get("ETag") != `W/"3"` {
		t.Fatalf("delete: etag %q body %q", r.hdr.Get("ETag"), r.body)
	}
	e.do("GET", "/fhir/Patient/"+id, "").outcome(t, http.StatusGone)
	e.do("GET", "/fhir/Patient/"+id+"/_history/3", "").outcome(t, http.StatusGone)
	e.do("GET", "/fhir/Patient/"+id+"/_history/2", "").expect(t, http.StatusOK)
	// Idempotent deletes.
	e.do("DELETE", "/fhir/Patient/"+id, "").expect(t, http.StatusNoContent)
	e.do("DELETE", "/fhir/Patient/never-existed", "").expect(t, http.StatusNoContent)
	issues := e.do("DELETE", "/fhir/Patient/never-existed", "", "Prefer: return=OperationOutcome").outcome(t, http.StatusOK)
	if issues[0].(map[string]any)["severity"] != "information" {
		t.Errorf("issues %v", issues)
	}
	// Patch/update of a deleted resource.
	e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"add","path":"/active","value":true}]`, "Content-Type: application/json-patch+json").outcome(t, http.StatusGone)

	t.Run("instance history", func(t *testing.T) {
		b := e.do("GET", "/fhir/Patient/"+id+"/_history", "").expect(t, http.StatusOK).json(t)
		if b["type"] != "history" || b["total"] != float64(3) {
			t.Fatalf("history: %v %v", b["type"], b["total"])
		}
		es := entries(b)
		if len(es) != 3 {
			t.Fatalf("%d entries", len(es))
		}
		if get(es[0], "request", "method") != "DELETE" || es[0]["resource"] != nil || get(es[0], "response", "etag") != `W/"3"` {
			t.Errorf("entry 0: %v", es[0])
		}
		if get(es[1], "request", "method") != "PUT" || get(es[1], "resource", "meta", "versionId") != "2" {
			t.Errorf("entry 1: %v", es[1])
		}
		if get(es[2], "request", "method") != "POST" || get(es[2], "request", "url") != "Patient" || get(es[2], "response", "status") != "201 Created" {
			t.Errorf("entry 2: %v", es[2])
		}
		if es[2]["fullUrl"] != testBase+"/Patient/"+id {
			t.Errorf("fullUrl %v", es[2]["fullUrl"])
		}
	})
	t.Run("history paging and levels", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			e.create(`{"resourceType":"Organization","name":"O"}`)
		}
		b := e.do("GET", "/fhir/Organization/_history?_count=3", "").expect(t, http.StatusOK).json(t)
		if len(entries(b)) != 3 || b["total"] != float64(4) {
			t.Fatalf("type history page 1: %d entries, total %v", len(entries(b)), b["total"])
		}
		next := link(b, "next")
		if next == "" {
			t.Fatal("no next link")
		}
		b2 := e.do("GET", pathOf(t, next), "").expect(t, http.StatusOK).json(t)
		if len(entries(b2)) != 1 || link(b2, "next") != "" {
			t.Fatalf("page 2: %d entries next %q", len(entries(b2)), link(b2, "next"))
		}
		sys := e.do("GET", "/fhir/_history", "").expect(t, http.StatusOK).json(t)
		if sys["total"] != float64(7) {
			t.Errorf("system history total %v", sys["total"])
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		b3 := e.do("GET", "/fhir/_history?_since="+future, "").expect(t, http.StatusOK).json(t)
		if len(entries(b3)) != 0 {
			t.Errorf("_since in the future: %d entries", len(entries(b3)))
		}
		e.do("GET", "/fhir/_history?_since=garbage", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/_history?_cursor=!!", "").outcome(t, http.StatusBadRequest)
		e.do("GET", "/fhir/Patient/nope/_history", "").outcome(t, http.StatusNotFound)
	})
	t.Run("conditional delete", func(t *testing.T) {
		e.do("DELETE", "/fhir/Patient?identifier=http://example.org/mrn|nobody", "").expect(t, http.StatusNoContent)
		cid := e.create(patient("cd-1", "C"))
		e.do("DELETE", "/fhir/Patient?identifier=http://example.org/mrn|cd-1", "").expect(t, http.StatusNoContent)
		e.do("GET", "/fhir/Patient/"+cid, "").outcome(t, http.StatusGone)
		e.create(patient("cd-2", "C"))
		e.create(patient("cd-2", "C"))
		e.do("DELETE", "/fhir/Patient?identifier=http://example.org/mrn|cd-2", "").outcome(t, http.StatusPreconditionFailed)
		e.do("DELETE", "/fhir/Patient", "").outcome(t, http.StatusBadRequest)
	})
	t.Run("delete If-Match", func(t *testing.T) {
		did := e.create(patient("dm", "M"))
		e.do("DELETE", "/fhir/Patient/"+did, "", `If-Match: W/"5"`).outcome(t, http.StatusPreconditionFailed)
		e.do("DELETE", "/fhir/Patient/"+did, "", `If-Match: W/"1"`).expect(t, http.StatusNoContent)
	})
}

func TestPatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(patient("p-1", "Patch"))
	jp := "Content-Type: application/json-patch+json"
	t.Run("ok", func(t *testing.T) {
		r := e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"test","path":"/active","value":true},{"op":"replace","path":"/active","value":false},{"op":"add","path":"/name/0/given/-","value":"Beth"}]`, jp).expect(t, http.StatusOK)
		m := r.json(t)
		if m["active"] != false || get(m, "name", 0, "given", 1) != "Beth" || r.hdr.Get("ETag") != `W/"2"` {
			t.Fatalf("patched: %s", r.body)
		}
		b := e.do("GET", "/fhir/Patient/"+id+"/_history", "").json(t)
		if get(entries(b)[0], "request", "method") != "PATCH" {
			t.Errorf("history method %v", get(entries(b)[0], "request", "method"))
		}
	})
	t.Run("failed test 422", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"test","path":"/active","value":true}]`, jp).outcome(t, http.StatusUnprocessableEntity)
	})
	t.Run("missing path 422", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"remove","path":"/photo"}]`, jp).outcome(t, http.StatusUnprocessableEntity)
	})
	t.Run("malformed 400", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `{"op":"add"}`, jp).outcome(t, http.StatusBadRequest)
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"jump","path":"/a"}]`, jp).outcome(t, http.StatusBadRequest)
		e.do("PATCH", "/fhir/Patient/"+id, `[`, jp).outcome(t, http.StatusBadRequest)
	})
	t.Run("id and resourceType 400", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/id","value":"other"}]`, jp).outcome(t, http.StatusBadRequest)
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/resourceType","value":"Group"}]`, jp).outcome(t, http.StatusBadRequest)
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"remove","path":"/id"}]`, jp).outcome(t, http.StatusBadRequest)
	})
	t.Run("invalid result 422", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"add","path":"/birthDate","value":"yesterday"}]`, jp).outcome(t, http.StatusUnprocessableEntity)
	})
	t.Run("If-Match", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"add","path":"/active","value":true}]`, jp, `If-Match: W/"1"`).outcome(t, http.StatusPreconditionFailed)
	})
	t.Run("content types 415", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/"+id, `[]`, "Content-Type: application/fhir+json").outcome(t, http.StatusUnsupportedMediaType)
		e.do("PATCH", "/fhir/Patient/"+id, `<x/>`, "Content-Type: application/xml-patch+xml").outcome(t, http.StatusUnsupportedMediaType)
	})
	t.Run("missing 404", func(t *testing.T) {
		e.do("PATCH", "/fhir/Patient/nope", `[]`, jp).outcome(t, http.StatusNotFound)
	})
	t.Run("conditional patch", func(t *testing.T) {
		r := e.do("PATCH", "/fhir/Patient?identifier=http://example.org/mrn|p-1", `[{"op":"replace","path":"/birthDate","value":"1990-05-05"}]`, jp).expect(t, http.StatusOK)
		if r.json(t)["birthDate"] != "1990-05-05" {
			t.Fatalf("%s", r.body)
		}
		e.do("PATCH", "/fhir/Patient?identifier=http://example.org/mrn|none", `[]`, jp).outcome(t, http.StatusNotFound)
	})
}

func TestNegotiationAndErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *resourceConfig) { c.MaxBodyBytes = 2048 })
	id := e.create(patient("n-1", "Neg"))
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
	}{
		{"Accept XML 406", "GET", "/fhir/Patient/" + id, "", []string{"Accept: application/fhir+xml"}, 406},
		{"Accept text/html 406", "GET", "/fhir/Patient/" + id, "", []string{"Accept: text/html"}, 406},
		{"_format xml 406", "GET", "/fhir/Patient/" + id + "?_format=xml", "", nil, 406},
		{"_format=application/fhir+xml 406", "GET", "/fhir/Patient?_format=application/fhir%2Bxml", "", nil, 406},
		{"XML body 415", "POST", "/fhir/Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type: application/fhir+xml"}, 415},
		{"text/plain body 415", "POST", "/fhir/Patient", `{}`, []string{"Content-Type: text/plain"}, 415},
		{"XML body on PUT 415", "PUT", "/fhir/Patient/" + id, `<x/>`, []string{"Content-Type: application/xml"}, 415},
		{"XML transaction 415", "POST", "/fhir", `<x/>`, []string{"Content-Type: application/fhir+xml"}, 415},
		{"bad charset 415", "POST", "/fhir/Patient", `{}`, []string{"Content-Type: application/fhir+json; charset=latin1"}, 415},
		{"too large 413", "POST", "/fhir/Patient", `{"resourceType":"Patient","text":{"div":"` + strings.Repeat("x", 4000) + `"}}`, nil, 413},
		{"malformed JSON 400", "POST", "/fhir/Patient", "{\n\"resourceType\": \"Patient\",\n\"active\": tru\n}", nil, 400},
		{"trailing data 400", "POST", "/fhir/Patient", `{"resourceType":"Patient"} {}`, nil, 400},
		{"array body 400", "POST", "/fhir/Patient", `[1]`, nil, 400},
		{"empty body 400", "POST", "/fhir/Patient", ``, []string{"Content-Type: application/fhir+json"}, 400},
		{"body type mismatch 400", "POST", "/fhir/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400},
		{"no resourceType 400", "POST", "/fhir/Patient", `{"active":true}`, nil, 400},
		{"invalid resource 400", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"robot"}`, nil, 400},
		{"method not allowed 405", "POST", "/fhir/Patient/" + id, `{}`, nil, 405},
		{"method not allowed on history 405", "DELETE", "/fhir/Patient/" + id + "/_history", "", nil, 405},
		{"unknown route 404", "GET", "/fhir/Patient/" + id + "/foo", "", nil, 404},
		{"unknown deep route 404", "GET", "/fhir/Patient/" + id + "/_history/1/x", "", nil, 404},
		{"outside base 404", "GET", "/other", "", nil, 404},
		{"invalid id on delete 400", "DELETE", "/fhir/Patient/a$b", "", nil, 400},
		{"create with query 400", "POST", "/fhir/Patient?identifier=x", patient("x", "x"), nil, 400},
		{"bad _count 400", "GET", "/fhir/Patient?_count=-1", "", nil, 400},
		{"strict unknown param 400", "GET", "/fhir/Patient?bogus=1", "", []string{"Prefer: handling=strict"}, 400},
		{"malformed query 400", "GET", "/fhir/Patient?name=%zz", "", nil, 400},
		{"bundle not a Bundle 400", "POST", "/fhir", patient("x", "x"), nil, 400},
		{"bundle wrong type 400", "POST", "/fhir", `{"resourceType":"Bundle","type":"collection"}`, nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body, c.hdr...)
			r.outcome(t, c.code)
			if c.code == 405 && r.hdr.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if c.name == "malformed JSON 400" && !strings.Contains(string(r.body), "line 3") {
				t.Errorf("no position in %s", r.body)
			}
		})
	}
	t.Run("Accept variants ok", func(t *testing.T) {
		for _, a := range []string{"application/fhir+json", "application/json", "*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/fhir+json; fhirVersion=4.0"} {
			e.do("GET", "/fhir/Patient/"+id, "", "Accept: "+a).expect(t, http.StatusOK)
		}
	})
	t.Run("application/json body ok", func(t *testing.T) {
		e.do("POST", "/fhir/Patient", patient("j", "J"), "Content-Type: application/json").expect(t, http.StatusCreated)
	})
}

func TestPrefer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("POST", "/fhir/Patient", patient("pr", "P"), "Prefer: return=minimal").expect(t, http.StatusCreated)
	if len(r.body) != 0 || r.hdr.Get("Location") == "" || r.hdr.Get("ETag") != `W/"1"` {
		t.Fatalf("minimal: %q %v", r.body, r.hdr)
	}
	r = e.do("POST", "/fhir/Patient", patient("pr", "P"), "Prefer: return=OperationOutcome")
	r.outcome(t, http.StatusCreated)
	r = e.do("POST", "/fhir/Patient", patient("pr", "P"), "Prefer: return=representation").expect(t, http.StatusCreated)
	if r.json(t)["resourceType"] != "Patient" {
		t.Fatal("representation")
	}
	// Lenient search: ignored parameter reported in an outcome entry.
	b := e.do("GET", "/fhir/Patient?bogus=1", "", "Prefer: handling=lenient").expect(t, http.StatusOK).json(t)
	found := false
	for _, en := range entries(b) {
		if get(en, "search", "mode") == "outcome" && get(en, "resource", "resourceType") == "OperationOutcome" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no outcome entry for ignored parameter: %v", b)
	}
	if self := link(b, "self"); strings.Contains(self, "bogus") {
		t.Errorf("self link keeps ignored parameter: %s", self)
	}
}

func TestSearchPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := map[string]bool{}
	for i := 0; i < 25; i++ {
		want[e.create(patient(fmt.Sprint("pg-", i), "Pager"))] = true
	}
	e.create(patient("other", "Other"))
	b := e.do("GET", "/fhir/Patient?family=pager&_count=10", "").expect(t, http.StatusOK).json(t)
	if b["type"] != "searchset" || b["total"] != float64(25) {
		t.Fatalf("type %v total %v", b["type"], b["total"])
	}
	if link(b, "self") == "" || link(b, "previous") != "" {
		t.Errorf("links on page 1: %v", b["link"])
	}
	got := map[string]bool{}
	pages := 0
	for {
		pages++
		for _, en := range entries(b) {
			if get(en, "search", "mode") != "match" {
				t.Fatalf("mode %v", get(en, "search", "mode"))
			}
			id := get(en, "resource", "id").(string)
			if en["fullUrl"] != testBase+"/Patient/"+id {
				t.Errorf("fullUrl %v", en["fullUrl"])
			}
			if got[id] {
				t.Fatalf("duplicate %s across pages", id)
			}
			got[id] = true
		}
		next := link(b, "next")
		if next == "" {
			break
		}
		if pages > 1 && link(b, "previous") == "" {
			t.Errorf("page %d has no previous link", pages)
		}
		b = e.do("GET", pathOf(t, next), "").expect(t, http.StatusOK).json(t)
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	if pages != 3 || len(got) != 25 {
		t.Fatalf("%d pages, %d resources", pages, len(got))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("missing %s", id)
		}
	}
	prev := link(b, "previous")
	pb := e.do("GET", pathOf(t, prev), "").expect(t, http.StatusOK).json(t)
	if len(entries(pb)) != 10 {
		t.Errorf("previous page has %d entries", len(entries(pb)))
	}
	first := e.do("GET", pathOf(t, link(b, "first")), "").expect(t, http.StatusOK).json(t)
	if len(entries(first)) != 10 {
		t.Errorf("first page has %d entries", len(entries(first)))
	}

	t.Run("_total=none", func(t *testing.T) {
		b := e.do("GET", "/fhir/Patient?family=pager&_total=none", "").expect(t, http.StatusOK).json(t)
		if _, ok := b["total"]; ok {
			t.Error("total present with _total=none")
		}
	})
	t.Run("_summary=count", func(t *testing.T) {
		b := e.do("GET", "/fhir/Patient?family=pager&_summary=count", "").expect(t, http.StatusOK).json(t)
		if b["total"] != float64(25) || len(entries(b)) != 0 {
			t.Errorf("count: total %v entries %d", b["total"], len(entries(b)))
		}
	})
	t.Run("_elements", func(t *testing.T) {
		b := e.do("GET", "/fhir/Patient?family=pager&_elements=birthDate&_count=1", "").expect(t, http.StatusOK).json(t)
		res := entries(b)[0]["resource"].(map[string]any)
		if res["name"] != nil || res["birthDate"] == nil || get(res, "meta", "tag", 0, "code") != "SUBSETTED" {
			t.Errorf("_elements: %v", res)
		}
	})
	t.Run("POST _search", func(t *testing.T) {
		b := e.do("POST", "/fhir/Patient/_search", "family=pager&_count=5", "Content-Type: application/x-www-form-urlencoded").expect(t, http.StatusOK).json(t)
		if b["total"] != float64(25) || len(entries(b)) != 5 {
			t.Errorf("POST _search: total %v entries %d", b["total"], len(entries(b)))
		}
		e.do("POST", "/fhir/Patient/_search", `{"a":1}`, "Content-Type: application/json").outcome(t, http.StatusUnsupportedMediaType)
	})
	t.Run("system search", func(t *testing.T) {
		b := e.do("GET", "/fhir?_type=Patient&_count=1", "").expect(t, http.StatusOK).json(t)
		if b["total"] != float64(26) {
			t.Errorf("system search total %v", b["total"])
		}
	})
	t.Run("include", func(t *testing.T) {
		pid := e.create(patient("inc", "Inc"))
		e.create(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + pid + `"}}`)
		b := e.do("GET", "/fhir/Observation?subject=Patient/"+pid+"&_include=Observation:subject", "").expect(t, http.StatusOK).json(t)
		modes := map[string]int{}
		for _, en := range entries(b) {
			modes[get(en, "search", "mode").(string)]++
		}
		if modes["match"] != 1 || modes["include"] != 1 {
			t.Errorf("modes %v", modes)
		}
	})
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *resourceConfig) {
		c.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("boom") != "" {
					panic("boom")
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	issues := e.do("GET", "/fhir/Patient?boom=1", "").outcome(t, http.StatusInternalServerError)
	if strings.Contains(fmt.Sprint(issues), "boom") {
		t.Error("panic value leaked to the client")
	}
	e.do("GET", "/fhir/Patient", "").expect(t, http.StatusOK)
}
