package resource

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
)

var (
	regOnce sync.Once
	regVal  *definitions.Registry
	regErr  error
)

func testRegistry(t testing.TB) *definitions.Registry {
	t.Helper()
	regOnce.Do(func() { regVal, regErr = definitions.Load() })
	if regErr != nil {
		t.Fatal(regErr)
	}
	return regVal
}

func TestRefRewriter(t *testing.T) {
	reg := testRegistry(t)
	const pat = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
	rw := &refRewriter{reg: reg, mapping: map[string]string{
		pat:                      "Patient/abc",
		"urn:oid:1.2.3":          "Practitioner/p1",
		"http://other/Patient/9": "Patient/9",
	}, cond: func(ref string) (string, error) { return "Organization/o1", nil }}
	doc := decodeAny(t, `{
	  "resourceType": "Observation",
	  "status": "final",
	  "code": {"text": "x"},
	  "subject": {"reference": "`+pat+`"},
	  "performer": [{"reference": "urn:oid:1.2.3"}, {"reference": "Organization?identifier=a|b"}, {"reference": "http://other/Patient/9"}],
	  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"`+pat+`\">p</a><img src='`+pat+`'/></div>"},
	  "extension": [{"url": "http://example.org/ext", "valueReference": {"reference": "`+pat+`"}},
	                {"url": "http://example.org/u", "valueUri": "`+pat+`"},
	                {"url": "http://example.org/c", "valueCanonical": "`+pat+`"},
	                {"url": "http://example.org/s", "valueString": "`+pat+`"}],
	  "component": [{"code": {"text": "c"}, "extension": [{"url": "http://e", "valueReference": {"reference": "`+pat+`"}}]}],
	  "contained": [{"resourceType": "Provenance", "id": "p", "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"reference": "`+pat+`"}}], "target": [{"reference": "`+pat+`"}]}],
	  "_status": {"extension": [{"url": "http://e", "valueReference": {"reference": "`+pat+`"}}]},
	  "identifier": [{"system": "urn:ietf:rfc:3986", "value": "`+pat+`"}]
	}`).(map[string]any)
	if err := rw.rewriteResource(doc); err != nil {
		t.Fatal(err)
	}
	want := decodeAny(t, `{
	  "resourceType": "Observation",
	  "status": "final",
	  "code": {"text": "x"},
	  "subject": {"reference": "Patient/abc"},
	  "performer": [{"reference": "Practitioner/p1"}, {"reference": "Organization/o1"}, {"reference": "Patient/9"}],
	  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"Patient/abc\">p</a><img src='Patient/abc'/></div>"},
	  "extension": [{"url": "http://example.org/ext", "valueReference": {"reference": "Patient/abc"}},
	                {"url": "http://example.org/u", "valueUri": "Patient/abc"},
	                {"url": "http://example.org/c", "valueCanonical": "`+pat+`"},
	                {"url": "http://example.org/s", "valueString": "`+pat+`"}],
	  "component": [{"code": {"text": "c"}, "extension": [{"url": "http://e", "valueReference": {"reference": "Patient/abc"}}]}],
	  "contained": [{"resourceType": "Provenance", "id": "p", "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"reference": "Patient/abc"}}], "target": [{"reference": "Patient/abc"}]}],
	  "_status": {"extension": [{"url": "http://e", "valueReference": {"reference": "Patient/abc"}}]},
	  "identifier": [{"system": "urn:ietf:rfc:3986", "value": "`+pat+`"}]
	}`)
	if !jsonEqual(doc, want) {
		got, _ := json.MarshalIndent(doc, "", " ")
		t.Fatalf("got %s", got)
	}
	if q := rw.rewriteQuery("subject=" + pat + "&x=urn%3Auuid%3A61ebe359-bfdc-4613-8bf2-c5e300945f0a&y=z"); q != "subject=Patient%2Fabc&x=Patient%2Fabc&y=z" {
		t.Fatalf("rewriteQuery: %s", q)
	}
}

// TestRefRewriterUnresolvedPlaceholder: a urn:uuid: or urn:oid: reference
// that is no entry's fullUrl is refused, naming it; in a uri element or a
// string it is data, left as it is.
func TestRefRewriterUnresolvedPlaceholder(t *testing.T) {
	reg := testRegistry(t)
	for _, ref := range []string{"urn:uuid:0d4e0a1b-4f7a-4d47-9c1e-3b8c5d8f9a11", "urn:oid:1.2.9"} {
		rw := &refRewriter{reg: reg, mapping: map[string]string{"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a": "Patient/abc"}}
		doc := decodeAny(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+ref+`"}}`).(map[string]any)
		err := rw.rewriteResource(doc)
		if err == nil || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "no entry") {
			t.Errorf("reference %s: %v, want a refusal naming it", ref, err)
		}
		var oe *outcome.Error
		if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest {
			t.Errorf("reference %s: %v, want a 400 OperationOutcome", ref, err)
		}
		kept := decodeAny(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"identifier":[{"system":"urn:ietf:rfc:3986","value":"`+ref+`"}]}`).(map[string]any)
		if err := rw.rewriteResource(kept); err != nil {
			t.Errorf("identifier %s: %v", ref, err)
		}
		// A document stored by an entry names its own entries.
		doc = decodeAny(t, `{"resourceType":"Bundle","type":"document","entry":[
		  {"fullUrl":"urn:uuid:c0","resource":{"resourceType":"Composition","status":"final","type":{"text":"x"},"date":"2020-01-01","title":"t","author":[{"reference":"`+ref+`"}],"subject":{"reference":"`+ref+`"}}},
		  {"fullUrl":"`+ref+`","resource":{"resourceType":"Patient"}}]}`).(map[string]any)
		if err := rw.rewriteResource(doc); err != nil {
			t.Errorf("a document naming its own entry %s: %v", ref, err)
		}
		if got := doc["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["subject"].(map[string]any)["reference"]; got != ref {
			t.Errorf("a document's own placeholder became %v", got)
		}
		// A resource contained in an entry's resource names the
		// transaction's entries.
		doc = decodeAny(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Provenance","id":"p","recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"`+ref+`"}}],"target":[{"reference":"#"}]}]}`).(map[string]any)
		if err := rw.rewriteResource(doc); err == nil {
			t.Errorf("a contained resource naming no entry %s: accepted", ref)
		}
	}
}

// TestRefRewriterNestedBundle: a Bundle stored by a transaction entry (a
// document: its own urn:uuid fullUrls, its references naming them)
// resolves within itself (R4 bundle.html#references): a reference to one
// of its entries is kept, even when the transaction has an entry of the
// same fullUrl; one to another transaction entry is rewritten; one to
// neither is kept, not refused. Outside it (a contained resource), a
// placeholder no entry has is still refused.
func TestRefRewriterNestedBundle(t *testing.T) {
	reg := testRegistry(t)
	const (
		pat   = "urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" // the document's and the transaction's
		org   = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a" // the transaction's alone
		other = "urn:uuid:0d4e0a1b-4f7a-4d47-9c1e-3b8c5d8f9a11" // no one's
	)
	rw := &refRewriter{reg: reg, mapping: map[string]string{pat: "Patient/abc", org: "Organization/o1"}}
	doc := `{"resourceType":"Bundle","type":"document","entry":[
	  {"fullUrl":"urn:uuid:0f1e2d3c-4b5a-4697-8877-665544332211","resource":{"resourceType":"Composition","status":"final","type":{"text":"n"},"date":"2024-01-01","title":"t",
	    "subject":{"reference":"` + pat + `"},"author":[{"reference":"` + other + `"}],"custodian":{"reference":"%s"}}},
	  {"fullUrl":"` + pat + `","resource":{"resourceType":"Patient"}}]}`
	res := decodeAny(t, fmt.Sprintf(doc, org)).(map[string]any)
	if err := rw.rewriteResource(res); err != nil {
		t.Fatalf("a document Bundle refused: %v", err)
	}
	if want := decodeAny(t, fmt.Sprintf(doc, "Organization/o1")); !jsonEqual(res, want) {
		got, _ := json.Marshal(res)
		t.Errorf("got %s", got)
	}
	if _, ok := rw.mapping[pat]; !ok {
		t.Errorf("the transaction's mapping lost %s", pat)
	}
	contained := decodeAny(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},
	  "contained":[{"resourceType":"Provenance","id":"p","recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"`+org+`"}}],"target":[{"reference":"`+other+`"}]}]}`).(map[string]any)
	if err := rw.rewriteResource(contained); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("a contained resource's placeholder of no entry: %v, want refused", err)
	}
}

func TestMarshalResource(t *testing.T) {
	m := decodeAny(t, `{"name":[{"text":"a<b>&"}],"id":"x","resourceType":"Patient","meta":{"versionId":"1"},"active":true,"x":1.50}`).(map[string]any)
	b, err := MarshalResource(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"x","meta":{"versionId":"1"},"active":true,"name":[{"text":"a<b>&"}],"x":1.50}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
}

func TestIDsAndETags(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !ValidID(id) || len(id) != 36 || seen[id] {
			t.Fatalf("bad id %q", id)
		}
		seen[id] = true
	}
	for in, want := range map[string]int64{`W/"3"`: 3, `"12"`: 12, `7`: 7, ` W/"1" `: 1} {
		if v, err := ParseETag(in); err != nil || v != want {
			t.Errorf("ParseETag(%q) = %d, %v", in, v, err)
		}
	}
	for _, in := range []string{`W/"x"`, `W/"0"`, `*`, ``, `W/"-1"`} {
		if _, err := ParseETag(in); err == nil {
			t.Errorf("ParseETag(%q) accepted", in)
		}
	}
	if ETag(5) != `W/"5"` {
		t.Fatal(ETag(5))
	}
}

func TestSubset(t *testing.T) {
	reg := testRegistry(t)
	body := []byte(`{"resourceType":"Patient","id":"1","meta":{"versionId":"1"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"active":true,"name":[{"family":"F"}],"photo":[{"contentType":"image/png"}],"birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"http://e","valueString":"s"}]},"multipleBirthBoolean":false}`)
	keys := func(b []byte) map[string]bool {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for k := range m {
			out[k] = true
		}
		tags := m["meta"].(map[string]any)["tag"]
		if tags == nil {
			out["!untagged"] = true
		}
		return out
	}
	sub := func(summary string, elements ...string) map[string]bool {
		b, err := Subset(reg, body, summary, elements)
		if err != nil {
			t.Fatal(err)
		}
		return keys(b)
	}
	k := sub("true")
	if !k["name"] || !k["active"] || !k["birthDate"] || k["photo"] || k["text"] || k["multipleBirthBoolean"] || k["!untagged"] {
		t.Errorf("_summary=true: %v", k)
	}
	k = sub("text")
	if !k["text"] || !k["id"] || k["name"] || k["!untagged"] {
		t.Errorf("_summary=text: %v", k)
	}
	k = sub("data")
	if k["text"] || !k["photo"] || k["!untagged"] {
		t.Errorf("_summary=data: %v", k)
	}
	k = sub("false")
	if !k["text"] || !k["!untagged"] {
		t.Errorf("_summary=false: %v", k)
	}
	k = sub("", "birthDate", "multipleBirth")
	if !k["birthDate"] || !k["_birthDate"] || !k["multipleBirthBoolean"] || k["name"] || !k["id"] || !k["meta"] || k["!untagged"] {
		t.Errorf("_elements: %v", k)
	}
}
