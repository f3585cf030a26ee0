package interaction

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Interaction
		write        bool
	}{
		{"GET", "/fhir", Interaction{Kind: SearchSystem}, false},
		{"GET", "/fhir/", Interaction{Kind: SearchSystem}, false},
		{"POST", "/fhir/", Interaction{Kind: Batch}, true},
		{"POST", "/fhir/_search", Interaction{Kind: SearchSystem}, false},
		{"GET", "/fhir/_history", Interaction{Kind: HistorySystem}, false},
		{"GET", "/fhir/metadata", Interaction{Kind: Capabilities}, false},
		{"GET", "/fhir/Patient", Interaction{Kind: SearchType, Type: "Patient"}, false},
		{"HEAD", "/fhir/Patient", Interaction{Kind: SearchType, Type: "Patient"}, false},
		{"POST", "/fhir/Patient", Interaction{Kind: Create, Type: "Patient"}, true},
		{"PUT", "/fhir/Patient", Interaction{Kind: Update, Type: "Patient", Conditional: true}, true},
		{"PATCH", "/fhir/Patient", Interaction{Kind: Patch, Type: "Patient", Conditional: true}, true},
		{"DELETE", "/fhir/Patient", Interaction{Kind: Delete, Type: "Patient", Conditional: true}, true},
		{"POST", "/fhir/Patient/_search", Interaction{Kind: SearchType, Type: "Patient"}, false},
		{"GET", "/fhir/Patient/_history", Interaction{Kind: HistoryType, Type: "Patient"}, false},
		{"GET", "/fhir/Patient/1", Interaction{Kind: Read, Type: "Patient", ID: "1"}, false},
		{"PUT", "/fhir/Patient/1", Interaction{Kind: Update, Type: "Patient", ID: "1"}, true},
		{"PATCH", "/fhir/Patient/1", Interaction{Kind: Patch, Type: "Patient", ID: "1"}, true},
		{"DELETE", "/fhir/Patient/1", Interaction{Kind: Delete, Type: "Patient", ID: "1"}, true},
		{"GET", "/fhir/Patient/1/_history", Interaction{Kind: HistoryInst, Type: "Patient", ID: "1"}, false},
		{"GET", "/fhir/Patient/1/_history/3", Interaction{Kind: VRead, Type: "Patient", ID: "1", VID: "3"}, false},
		{"GET", "/fhir/$export", Interaction{Kind: Operation, Operation: "$export"}, false},
		{"POST", "/fhir/Group/g/$export", Interaction{Kind: Operation, Type: "Group", ID: "g", Operation: "$export"}, true},
		{"GET", "/fhir/Patient/1/$everything", Interaction{Kind: Operation, Type: "Patient", ID: "1", Operation: "$everything"}, false},
		{"POST", "/fhir/Patient/1/$everything", Interaction{Kind: Operation, Type: "Patient", ID: "1", Operation: "$everything"}, false},
		{"GET", "/fhir/Patient/1/Observation", Interaction{Kind: SearchType, Type: "Observation", Compartment: "Patient", CompartmentID: "1"}, false},
		{"HEAD", "/fhir/Patient/1/*", Interaction{Kind: SearchSystem, Compartment: "Patient", CompartmentID: "1"}, false},
		{"POST", "/fhir/Patient/1/Observation/_search", Interaction{Kind: SearchType, Type: "Observation", Compartment: "Patient", CompartmentID: "1"}, false},
		// Shapes no interaction has: writes by their method.
		{"POST", "/fhir/Patient/1/Observation", Interaction{Kind: Unknown, Type: "Patient", ID: "1"}, true},
		{"POST", "/fhir/Patient/1", Interaction{Kind: Unknown, Type: "Patient", ID: "1"}, true},
		{"GET", "/fhir/a/b/c/d/e", Interaction{Kind: Unknown, Type: "a", ID: "b"}, false},
	} {
		ix := Parse("/fhir", httptest.NewRequest(tc.method, "http://h"+tc.path, nil))
		got := *ix
		got.Method, got.Params, got.Patients, got.trailing = "", nil, nil, false
		tc.want.FHIR = true
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s = %+v, want %+v", tc.method, tc.path, got, tc.want)
		}
		if ix.Write() != tc.write {
			t.Errorf("%s %s: Write() = %v", tc.method, tc.path, ix.Write())
		}
	}
	for _, p := range []string{"/fhirx/Patient", "/other", "/fhir/auth/token", "/fhir/.well-known/smart-configuration"} {
		if ix := Parse("/fhir", httptest.NewRequest("GET", p, nil)); ix.FHIR || ix.Kind != Unknown {
			t.Errorf("%s is FHIR: %+v", p, ix)
		}
	}
	if ix := Parse("", httptest.NewRequest("GET", "/Patient/1", nil)); ix.Kind != Read || ix.ID != "1" {
		t.Errorf("at the root: %+v", ix)
	}
}

// TestTargetPatients: one rule for every stage. Rate limiting and audit
// used to disagree: audit skipped comma-separated values (and a repeated
// parameter), took any modifier (patient:missing=true named patient
// "true") and picked among several parameters in map order.
func TestTargetPatients(t *testing.T) {
	for _, tc := range []struct {
		path, query string
		want        []string
	}{
		{"Patient/123", "", []string{"123"}},
		{"Patient/123/_history/2", "", []string{"123"}},
		{"Patient/_history", "", nil},
		{"Patient/$match", "", nil},
		{"Patient/123/Observation", "code=x", []string{"123"}},
		{"Patient/123/$everything", "", []string{"123"}},
		{"Patient", "_id=1,2", []string{"1", "2"}},
		{"Patient/123/Patient", "_id=9", []string{"123"}},
		{"Observation", "_id=1", nil},
		{"Observation", "patient=7&code=x", []string{"7"}},
		{"Observation", "patient=Patient/7", []string{"7"}},
		{"Observation", "patient=https://h.example/fhir/Patient/7", []string{"7"}},
		{"Observation", "subject=Patient/8", []string{"8"}},
		{"Observation", "subject=Group/8", nil},
		{"Observation", "subject=8", nil}, // type unknown
		{"Observation", "subject:Patient=9", []string{"9"}},
		{"Observation", "patient=1,2,1&subject=Patient/3", []string{"1", "2", "3"}},
		{"Observation", "patient=1&patient=2", []string{"1", "2"}},
		{"Observation", "subject=Patient/3&patient=1", []string{"1", "3"}}, // sorted by name, not map order
		{"Observation", "patient=bad%20id", nil},
		{"Observation", "patient=" + strings.Repeat("x", 65), nil},
		{"Observation", "patient=" + strings.Repeat("1,", 30), []string{"1"}},
		{"Encounter", "patient:Patient=4", []string{"4"}},
		{"Coverage", "beneficiary=Patient/5", []string{"5"}},
		{"Coverage", "beneficiary=5", nil},
		{"Observation", "patient:missing=true", nil},
		{"Observation", "patient:identifier=http://x|1", nil},
		{"Observation", "patient.name=smith", nil},
	} {
		r := httptest.NewRequest("GET", "/fhir/"+tc.path+"?"+tc.query, nil)
		if got := Parse("/fhir", r).Patients; !slices.Equal(got, tc.want) {
			t.Errorf("%s?%s = %q, want %q", tc.path, tc.query, got, tc.want)
		}
	}
	var many []string
	for i := range 50 {
		many = append(many, strconv.Itoa(i))
	}
	r := httptest.NewRequest("GET", "/fhir/Observation?patient="+strings.Join(many, ","), nil)
	if got := Parse("/fhir", r).Patients; len(got) != MaxPatients {
		t.Fatalf("%d patients, want at most %d", len(got), MaxPatients)
	}
}

// TestReadForm: the form body of a POST search adds to the parameters
// once, and the handler still reads the whole body.
func TestReadForm(t *testing.T) {
	r := httptest.NewRequest("POST", "/fhir/Observation/_search?code=x", strings.NewReader("patient=1,2&subject=Patient/3"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	ix := Parse("/fhir", r)
	ix.ReadForm(r, 1<<20)
	ix.ReadForm(r, 1<<20)
	if !slices.Equal(ix.Patients, []string{"1", "2", "3"}) || ix.Params.Get("code") != "x" || len(ix.Params["patient"]) != 1 {
		t.Fatalf("%q %v", ix.Patients, ix.Params)
	}
	b := make([]byte, 100)
	n, _ := r.Body.Read(b)
	if string(b[:n]) != "patient=1,2&subject=Patient/3" {
		t.Fatalf("body %q", b[:n])
	}
	// Too large: left to the handler.
	r = httptest.NewRequest("POST", "/fhir/Observation/_search", strings.NewReader("patient=1&x="+strings.Repeat("y", 100)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ix = Parse("/fhir", r)
	ix.ReadForm(r, 50)
	if len(ix.Patients) != 0 {
		t.Fatalf("%q", ix.Patients)
	}
	// Not a form: not read.
	r = httptest.NewRequest("POST", "/fhir/Observation/_search", strings.NewReader("patient=1"))
	ix = Parse("/fhir", r)
	ix.ReadForm(r, 50)
	if len(ix.Patients) != 0 {
		t.Fatalf("%q", ix.Patients)
	}
}

// TestFromRoute: an Interaction built from the matched route and its
// path values is the one Parse makes of the same request.
func TestFromRoute(t *testing.T) {
	mux := http.NewServeMux()
	var got *Interaction
	for _, rt := range []struct {
		pattern string
		kind    Kind
	}{
		{"GET /fhir/{$}", SearchSystem}, {"POST /fhir/{$}", Batch}, {"POST /fhir/_search", SearchSystem},
		{"GET /fhir/_history", HistorySystem}, {"GET /fhir/metadata", Capabilities},
		{"GET /fhir/{type}", SearchType}, {"POST /fhir/{type}", Create}, {"PUT /fhir/{type}", Update},
		{"PATCH /fhir/{type}", Patch}, {"DELETE /fhir/{type}", Delete}, {"POST /fhir/{type}/_search", SearchType},
		{"GET /fhir/{type}/_history", HistoryType}, {"GET /fhir/{type}/{id}", Read}, {"PUT /fhir/{type}/{id}", Update},
		{"PATCH /fhir/{type}/{id}", Patch}, {"DELETE /fhir/{type}/{id}", Delete},
		{"GET /fhir/{type}/{id}/_history", HistoryInst}, {"GET /fhir/{type}/{id}/_history/{vid}", VRead},
		{"GET /fhir/{comp}/{cid}/{type}", SearchType}, {"POST /fhir/{comp}/{cid}/{type}/_search", SearchType},
		{"GET /fhir/Patient/{id}/$everything", Operation}, {"POST /fhir/Patient/{id}/$everything", Operation},
		{"GET /fhir/$export", Operation},
	} {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { got = FromRoute("/fhir", rt.kind, r) })
	}
	for _, c := range []string{
		"GET /fhir/", "POST /fhir/", "POST /fhir/_search", "GET /fhir/_history", "GET /fhir/metadata",
		"GET /fhir/Patient?_id=1,2", "HEAD /fhir/Patient", "POST /fhir/Patient", "PUT /fhir/Patient?name=x", "PATCH /fhir/Patient",
		"DELETE /fhir/Patient", "POST /fhir/Patient/_search", "GET /fhir/Patient/_history", "GET /fhir/Patient/1",
		"PUT /fhir/Patient/1", "PATCH /fhir/Patient/1", "DELETE /fhir/Observation/1", "GET /fhir/Patient/1/_history",
		"GET /fhir/Patient/1/_history/3", "GET /fhir/$export", "GET /fhir/Patient/1/$everything",
		"POST /fhir/Patient/1/$everything", "GET /fhir/Patient/1/Observation?subject=Patient/2", "HEAD /fhir/Patient/1/*",
		"POST /fhir/Patient/1/Observation/_search", "GET /fhir/Observation/$lookup", "GET /fhir/_x",
		"GET /fhir/Observation?patient=7",
	} {
		method, target, _ := strings.Cut(c, " ")
		got = nil
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, "http://h"+target, nil))
		want := Parse("/fhir", httptest.NewRequest(method, "http://h"+target, nil))
		if got == nil {
			t.Errorf("%s: no route", c)
			continue
		}
		g := *got
		g.Pattern = ""
		if !reflect.DeepEqual(&g, want) || got.Write() != want.Write() || got.Everything() != want.Everything() {
			t.Errorf("%s: FromRoute %+v, Parse %+v", c, got, want)
		}
	}
	r := httptest.NewRequest("GET", "/fhir/Patient/1", nil)
	ix := Parse("/fhir", r)
	if FromContext(context.Background()) != nil || FromContext(NewContext(r.Context(), ix)) != ix {
		t.Fatal("not in context")
	}
}
