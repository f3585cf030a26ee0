package access_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/resource"
)

// binaries: beside the fixtures' bin (no securityContext), a Binary of pa
// and one of pb (securityContext the Patient), and one whose
// securityContext is pa's DocumentReference doca.
var binaries = []string{
	`{"resourceType":"Binary","id":"binpa","contentType":"text/plain","securityContext":{"reference":"Patient/pa"},"data":"eA=="}`,
	`{"resourceType":"Binary","id":"binpb","contentType":"text/plain","securityContext":{"reference":"Patient/pb"},"data":"eA=="}`,
	`{"resourceType":"DocumentReference","id":"doca","status":"current","subject":{"reference":"Patient/pa"},"content":[{"attachment":{"contentType":"text/plain","url":"Binary/bindoc"}}]}`,
	`{"resourceType":"Binary","id":"bindoc","contentType":"text/plain","securityContext":{"reference":"DocumentReference/doca"},"data":"eA=="}`,
}

func everything(id, query string) op {
	return func(ctx context.Context, s *resource.Service) (*resource.Result, error) {
		v, err := url.ParseQuery(query)
		if err != nil {
			panic(err)
		}
		p, err := s.Everything(ctx, id, v)
		if err != nil {
			return nil, err
		}
		return &resource.Result{Status: http.StatusOK, Body: p.JSON()}, nil
	}
}

func binary(id, securityContext string) string {
	sc := ""
	if securityContext != "" {
		sc = `,"securityContext":{"reference":"` + securityContext + `"}`
	}
	idf := ""
	if id != "" {
		idf = `"id":"` + id + `",`
	}
	return `{"resourceType":"Binary",` + idf + `"contentType":"text/plain"` + sc + `,"data":"eA=="}`
}

// TestBinarySecurityContext: a Binary whose securityContext is Patient X
// is part of X's record for patient/ scopes that grant Binary, as a
// Device is through Device.patient: readable and searchable, and writable
// as X's Devices are. Another patient's Binary, one without
// securityContext and one whose securityContext is not a Patient (even
// the patient's own DocumentReference) stay hidden.
func TestBinarySecurityContext(t *testing.T) {
	who := map[string]*principal.Principal{
		"patient":  principals["patient"], // patient/*.cruds, pa
		"binary":   {Scopes: []string{"patient/Binary.rs"}, Patient: "pa"},
		"binary-r": {Scopes: []string{"patient/Binary.r"}, Patient: "pa"},
		"limited":  principals["limited"], // patient/Patient.rs patient/Observation.rs, pa
		"user":     principals["user"],
	}
	cells := []cell{
		{"patient", "read own", read("Binary", "binpa"), ok, ids("Binary/binpa"), nil},
		{"patient", "vread own", vread("Binary", "binpa"), ok, ids("Binary/binpa"), nil},
		{"patient", "read other's", read("Binary", "binpb"), notFound, nil, nil},
		{"patient", "vread other's", vread("Binary", "binpb"), notFound, nil, nil},
		{"patient", "read without securityContext", read("Binary", "bin"), notFound, nil, nil},
		{"patient", "read with a DocumentReference securityContext", read("Binary", "bindoc"), notFound, nil, nil},
		{"patient", "search", find("Binary", ""), ok, ids("Binary/binpa", "total:1"), nil},
		{"patient", "search by security-context", find("Binary", "security-context=Patient/pa"), ok, ids("Binary/binpa", "total:1"), nil},
		{"patient", "search other's security-context", find("Binary", "security-context=Patient/pb"), ok, ids("total:0"), nil},
		{"patient", "_revinclude", find("Patient", "_revinclude=Binary:security-context"), ok, ids("+Binary/binpa", "Patient/pa", "total:1"), nil},
		{"patient", "$everything", everything("pa", "_type=Binary"), ok, ids("Binary/binpa", "total:1"), nil},
		{"patient", "batch", bundle("batch", get("Binary/binpa"), get("Binary/binpb"), get("Binary/bindoc")), ok, ids("200 Binary/binpa", "404 ", "404 "), nil},
		{"binary", "read own", read("Binary", "binpa"), ok, ids("Binary/binpa"), nil},
		{"binary", "read other's", read("Binary", "binpb"), notFound, nil, nil},
		{"binary", "search", find("Binary", ""), ok, ids("Binary/binpa", "total:1"), nil},
		{"binary-r", "read own", read("Binary", "binpa"), ok, ids("Binary/binpa"), nil},
		{"binary-r", "search", find("Binary", ""), forbidden, nil, nil},
		{"limited", "read own", read("Binary", "binpa"), forbidden, nil, nil},
		{"limited", "search", find("Binary", ""), forbidden, nil, nil},
		{"limited", "_revinclude", find("Patient", "_revinclude=Binary:security-context"), ok, ids("Patient/pa", "total:1"), nil},
		{"user", "search by security-context", find("Binary", "security-context=Patient/pa,DocumentReference/doca"), ok, ids("Binary/bindoc", "Binary/binpa", "total:2"), nil},
		{"user", "search by security-context id", find("Binary", "security-context:Patient=pb"), ok, ids("Binary/binpb", "total:1"), nil},
		// Writes follow Device's: the patient's own only.
		{"patient", "create own device", create("Device", `{"resourceType":"Device","patient":{"reference":"Patient/pa"}}`), created, nil, nil},
		{"patient", "create own", create("Binary", binary("", "Patient/pa")), created, nil, nil},
		{"patient", "create for other", create("Binary", binary("", "Patient/pb")), forbidden, nil, nil},
		{"patient", "create without securityContext", create("Binary", binary("", "")), forbidden, nil, nil},
		{"patient", "update other's", update("Binary", "binpb", binary("binpb", "Patient/pa")), notFound, nil, ids("Binary/binpb")},
		{"patient", "update unlinked", update("Binary", "bin", binary("bin", "Patient/pa")), notFound, nil, ids("Binary/bin")},
		{"patient", "move own out", update("Binary", "binpa", binary("binpa", "Patient/pb")), forbidden, nil, ids("Binary/binpa")},
		{"binary", "create own", create("Binary", binary("", "Patient/pa")), forbidden, nil, nil},
		{"patient", "update own", update("Binary", "binpa", binary("binpa", "Patient/pa")), ok, ids("Binary/binpa"), nil},
	}
	parallelDialects(t, func(t *testing.T, e *env) {
		for _, b := range binaries {
			var h struct{ ResourceType, ID string }
			json.Unmarshal([]byte(b), &h)
			if _, err := e.admin.Update(context.Background(), h.ResourceType, h.ID, []byte(b), ""); err != nil {
				t.Fatalf("loading %s/%s: %v", h.ResourceType, h.ID, err)
			}
		}
		for _, c := range cells {
			t.Run(c.who+"/"+c.name, func(t *testing.T) {
				ctx := principal.NewContext(context.Background(), who[c.who])
				status, got := outcomeOf(t, ctx, e.svc, c.op)
				e.check(t, status, got, c.status, c.ids, c.untouched)
			})
		}
	})
}

// TestBinaryReferenceForms: only a literal reference to the Patient on
// this server (relative, versioned or under this server's base) puts a
// Binary in that patient's record; another server's Patient of the same
// id does not. A patient's token reaches another's Binary through none
// of history, _include (also :iterate and *), chains or _has.
func TestBinaryReferenceForms(t *testing.T) {
	forms := []string{
		binary("binver", "Patient/pa/_history/1"),
		binary("binabs", base+"/fhir/Patient/pa"),
		binary("binfor", "http://other.example/fhir/Patient/pa"),
		// pa's Observation about pb's Binary.
		`{"resourceType":"Observation","id":"ofocus","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pa"},"focus":[{"reference":"Binary/binpb"}]}`,
	}
	pa := &principal.Principal{Scopes: []string{"patient/*.cruds"}, Patient: "pa"}
	cells := []cell{
		{"patient", "versioned reference", read("Binary", "binver"), ok, ids("Binary/binver"), nil},
		{"patient", "this server's absolute URL", read("Binary", "binabs"), ok, ids("Binary/binabs"), nil},
		{"patient", "another server's Patient", read("Binary", "binfor"), notFound, nil, nil},
		{"patient", "search", find("Binary", "_sort=_id"), ok, ids("Binary/binabs", "Binary/binpa", "Binary/binver", "total:3"), nil},
		{"patient", "type history", history("Binary", ""), ok, nil, nil},
		{"patient", "instance history of another's", history("Binary", "binpb"), notFound, nil, nil},
		{"patient", "_include", find("Observation", "_id=ofocus&_include=Observation:focus"), ok, ids("Observation/ofocus", "total:1"), nil},
		{"patient", "_include=*", find("Observation", "_id=ofocus&_include=*"), ok, ids("+Patient/pa", "Observation/ofocus", "total:1"), nil},
		{"patient", "_include:iterate", find("Observation", "_id=ofocus&_include:iterate=*"), ok, ids("+Patient/pa", "Observation/ofocus", "total:1"), nil},
		{"patient", "chain", find("Observation", "focus:Binary.security-context=Patient/pb"), ok, ids("total:0"), nil},
		{"patient", "chain by id", find("Observation", "focus:Binary._id=binpb"), ok, ids("total:0"), nil},
		{"patient", "_has", find("Patient", "_has:Binary:security-context:_id=binpb"), ok, ids("total:0"), nil},
		{"patient", "create for another server's Patient", create("Binary", binary("", "http://other.example/fhir/Patient/pa")), forbidden, nil, nil},
		{"patient", "create with a contained reference", create("Binary", binary("", "#pa")), forbidden, nil, nil},
		{"patient", "$everything", everything("pa", "_type=Binary"), ok, ids("Binary/binabs", "Binary/binpa", "Binary/binver", "total:3"), nil},
	}
	parallelDialects(t, func(t *testing.T, e *env) {
		for _, b := range append(binaries, forms...) {
			var h struct{ ResourceType, ID string }
			json.Unmarshal([]byte(b), &h)
			if _, err := e.admin.Update(context.Background(), h.ResourceType, h.ID, []byte(b), ""); err != nil {
				t.Fatalf("loading %s/%s: %v", h.ResourceType, h.ID, err)
			}
		}
		for _, c := range cells {
			t.Run(c.name, func(t *testing.T) {
				ctx := principal.NewContext(context.Background(), pa)
				status, got := outcomeOf(t, ctx, e.svc, c.op)
				if c.name == "type history" {
					for _, g := range got {
						if g == "Binary/binpb" || g == "Binary/bin" || g == "Binary/binfor" || g == "Binary/bindoc" {
							t.Errorf("type history shows %s: %v", g, got)
						}
					}
				}
				e.check(t, status, got, c.status, c.ids, c.untouched)
			})
		}
	})
}
