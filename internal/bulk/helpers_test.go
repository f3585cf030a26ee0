package bulk_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	// The binary under test is built from cmd/lapis; importing its code
	// makes go test's result cache notice when it changes.
	_ "github.com/lapis-health/lapis/internal/cli"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

func TestMain(m *testing.M) { lapistest.Main(m) }

// dialects runs fn once on SQLite and once on a fresh PostgreSQL database.
func dialects(t *testing.T, fn func(t *testing.T, dbURL string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "") })
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.New(t)) })
}

// fixture is a small data set: three patients, four Observations (lab
// and vital signs), two Conditions, a Practitioner, Devices of p1 and
// p3 and one of no patient, Binaries of p1 and p3 (their securityContext)
// and one of no patient, and Group g1 of p1 and p2.
const fixture = `{"resourceType":"Bundle","type":"transaction","entry":[
{"request":{"method":"PUT","url":"Patient/p1"},"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"One"}]}},
{"request":{"method":"PUT","url":"Patient/p2"},"resource":{"resourceType":"Patient","id":"p2","name":[{"family":"Two"}]}},
{"request":{"method":"PUT","url":"Patient/p3"},"resource":{"resourceType":"Patient","id":"p3","name":[{"family":"Three"}]}},
{"request":{"method":"PUT","url":"Practitioner/dr1"},"resource":{"resourceType":"Practitioner","id":"dr1"}},
{"request":{"method":"PUT","url":"Observation/o1"},"resource":{"resourceType":"Observation","id":"o1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"text":"a"},"subject":{"reference":"Patient/p1"}}},
{"request":{"method":"PUT","url":"Observation/o2"},"resource":{"resourceType":"Observation","id":"o2","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"text":"b"},"subject":{"reference":"Patient/p1"}}},
{"request":{"method":"PUT","url":"Observation/o3"},"resource":{"resourceType":"Observation","id":"o3","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"text":"c"},"subject":{"reference":"Patient/p2"}}},
{"request":{"method":"PUT","url":"Observation/o4"},"resource":{"resourceType":"Observation","id":"o4","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"text":"d"},"subject":{"reference":"Patient/p3"}}},
{"request":{"method":"PUT","url":"Condition/c1"},"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"}}},
{"request":{"method":"PUT","url":"Condition/c2"},"resource":{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p3"}}},
{"request":{"method":"PUT","url":"Device/dev1"},"resource":{"resourceType":"Device","id":"dev1","patient":{"reference":"Patient/p1"}}},
{"request":{"method":"PUT","url":"Device/dev3"},"resource":{"resourceType":"Device","id":"dev3","patient":{"reference":"Patient/p3"}}},
{"request":{"method":"PUT","url":"Device/stock"},"resource":{"resourceType":"Device","id":"stock"}},
{"request":{"method":"PUT","url":"Binary/bin1"},"resource":{"resourceType":"Binary","id":"bin1","contentType":"text/plain","securityContext":{"reference":"Patient/p1"},"data":"eA=="}},
{"request":{"method":"PUT","url":"Binary/bin3"},"resource":{"resourceType":"Binary","id":"bin3","contentType":"text/plain","securityContext":{"reference":"Patient/p3"},"data":"eA=="}},
{"request":{"method":"PUT","url":"Binary/binx"},"resource":{"resourceType":"Binary","id":"binx","contentType":"text/plain","data":"eA=="}},
{"request":{"method":"PUT","url":"Group/g1"},"resource":{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p2"}}]}}
]}`

// env is a server with the fixture and its API keys.
type env struct {
	*lapistest.Server
	sys   string // system/*.cruds
	other string // another system/*.rs client
}

// newEnv starts lapis serve on dbURL (extra serve flags in args) with the
// fixture loaded.
func newEnv(t *testing.T, dbURL string, args ...string) *env {
	t.Helper()
	return newEnvWith(t, lapistest.Options{Database: dbURL, Args: args})
}

// newEnvWith is newEnv with every option of the server.
func newEnvWith(t *testing.T, opts lapistest.Options) *env {
	t.Helper()
	s := lapistest.Start(t, opts)
	e := &env{Server: s}
	e.sys, _ = e.key(t, "system/*.cruds", "")
	e.other, _ = e.key(t, "system/*.rs", "")
	e.load(t, fixture)
	return e
}

// key creates an API key with scopes (bound to patient when set) and
// returns it and its id.
func (e *env) key(t *testing.T, scopes, patient string) (key, id string) {
	t.Helper()
	args := []string{"apikey", "create", "--name", "k", "--scope", scopes, "--json"}
	if patient != "" {
		args = append(args, "--patient", patient)
	}
	var k struct{ Key, ID string }
	if err := json.Unmarshal([]byte(e.MustCLI(t, "", args...)), &k); err != nil || k.Key == "" {
		t.Fatalf("apikey create: %v", err)
	}
	return k.Key, k.ID
}

func (e *env) load(t *testing.T, bundle string) {
	t.Helper()
	if r := e.Do(t, "POST", "/", strings.NewReader(bundle), "X-API-Key", e.sys, "Content-Type", "application/fhir+json"); r.Status != 200 {
		t.Fatalf("loading the fixture: %d %s", r.Status, r.Body)
	}
}

// kick sends a GET kick-off to path with key.
func (e *env) kick(t *testing.T, key, path string) *lapistest.Response {
	t.Helper()
	return e.Do(t, "GET", path, nil, "X-API-Key", key, "Accept", "application/fhir+json", "Prefer", "respond-async")
}

// start kicks off an export and returns its status URL.
func (e *env) start(t *testing.T, key, path string) string {
	t.Helper()
	r := e.kick(t, key, path)
	if r.Status != http.StatusAccepted {
		t.Fatalf("kick-off %s: %d %s", path, r.Status, r.Body)
	}
	loc := r.Header.Get("Content-Location")
	if !strings.HasPrefix(loc, e.Base+"/") {
		t.Fatalf("Content-Location %q is not an absolute URL under %s", loc, e.Base)
	}
	return loc
}

// manifest is the completion manifest.
type manifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"error"`
}

// wait polls the status URL until the job completes and returns the
// manifest (and the raw response).
func (e *env) wait(t *testing.T, key, status string) (*manifest, *lapistest.Response) {
	t.Helper()
	var last *lapistest.Response
	poll.Until(t, 30*time.Second, "export completes", func() bool {
		last = e.Do(t, "GET", status, nil, "X-API-Key", key, "Accept", "application/json")
		if last.Status == http.StatusAccepted {
			if ra := last.Header.Get("Retry-After"); ra == "" || strings.Trim(ra, "0123456789") != "" {
				t.Fatalf("Retry-After %q is not integer seconds", ra)
			}
			if p := last.Header.Get("X-Progress"); p == "" || len(p) >= 100 {
				t.Fatalf("X-Progress %q", p)
			}
			return false
		}
		return true
	})
	if last.Status != http.StatusOK {
		t.Fatalf("status: %d %s", last.Status, last.Body)
	}
	var m manifest
	if err := json.Unmarshal(last.Body, &m); err != nil {
		t.Fatal(err)
	}
	return &m, last
}

// contents downloads every output file of m and returns the ids per
// type, checking that each line is of its file's type.
func (e *env) contents(t *testing.T, key string, m *manifest) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, o := range m.Output {
		r := e.Do(t, "GET", o.URL, nil, "X-API-Key", key, "Accept", "application/fhir+ndjson")
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/fhir+ndjson") {
			t.Fatalf("GET %s: %d %s %s", o.URL, r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		n := 0
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var res struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.ResourceType != o.Type {
				t.Fatalf("%s: line %q is not a %s", o.URL, sc.Text(), o.Type)
			}
			out[o.Type] = append(out[o.Type], res.ID)
			n++
		}
		if n != o.Count {
			t.Errorf("%s: %d lines, manifest count %d", o.URL, n, o.Count)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// export runs an export to completion and returns its ids per type.
func (e *env) export(t *testing.T, key, path string) map[string][]string {
	t.Helper()
	m, _ := e.wait(t, key, e.start(t, key, path))
	return e.contents(t, key, m)
}

// only returns got restricted to the types named (for comparisons that
// ignore the audit trail and the like).
func only(got map[string][]string, types ...string) map[string][]string {
	out := map[string][]string{}
	for _, t := range types {
		if ids, ok := got[t]; ok {
			out[t] = ids
		}
	}
	return out
}
