package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/fhir/interaction"
	"github.com/lapis-health/lapis/internal/fhir/validate"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/backend"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

const base = "http://lapis.test/fhir"

var (
	regOnce sync.Once
	reg     *definitions.Registry
	ex      *extract.Extractor
)

func registry(t testing.TB) (*definitions.Registry, *extract.Extractor) {
	t.Helper()
	regOnce.Do(func() {
		var err error
		reg, err = definitions.Load()
		if err != nil {
			panic(err)
		}
		ex, err = extract.New(reg, base)
		if err != nil {
			panic(err)
		}
	})
	return reg, ex
}

type env struct {
	db  *DB
	st  store.Store
	rec *Recorder
	url string
}

func dialects(t *testing.T, fn func(t *testing.T, url string)) {
	// Each dialect has its own database: the two run side by side, one
	// mostly waiting on its commits while the other computes.
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite:"+filepath.Join(t.TempDir(), "lapis.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.New(t))
	})
}

func open(t testing.TB, url string, mod func(*Config)) *env {
	t.Helper()
	_, ix := registry(t)
	ctx := context.Background()
	st, db := stores(t, url)
	cfg := Config{DB: db, Store: st, Indexer: ix, Site: base, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AnchorEvery: -1}
	if mod != nil {
		mod(&cfg)
	}
	rec, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return &env{db: db, st: st, rec: rec, url: url}
}

// stores opens the FHIR store and the audit database at url, both closed
// when the test ends.
func stores(t testing.TB, url string) (store.Store, *DB) {
	t.Helper()
	ctx := context.Background()
	st, err := backend.Open(ctx, url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, openDB(t, url)
}

// openDB opens the audit database at url, closed when the test ends.
func openDB(t testing.TB, url string) *DB {
	t.Helper()
	db, err := OpenDB(context.Background(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func readEvent(i int) Event {
	return Event{Kind: KindREST, Action: "R", Interaction: "read", Outcome: OutcomeSuccess, Status: 200,
		ClientID: "app", Subject: "u1", FHIRUser: "Practitioner/p1", Method: "bearer", CredentialID: "jti-" + fmt.Sprint(i),
		Address: "10.0.0.1", Patient: "pat1", Returned: 1,
		Entities: []Entity{{Type: "Observation", ID: fmt.Sprintf("o%d", i), Version: "2", Role: "domain"}}}
}

func write(t *testing.T, e *env, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := e.rec.Commit(context.Background(), readEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Commit returns once the chain rows are durable; wait for the
	// AuditEvent resources too.
	e.rec.Close()
}

func verify(t *testing.T, e *env) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), e.db, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestChainVerifies(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e := open(t, url, nil)
		write(t, e, 10)
		rep := verify(t, e)
		if !rep.OK || rep.Records != 10 || rep.Chains != 1 || rep.Pending != 0 {
			t.Fatalf("report = %+v", rep)
		}
	})
}

// tamper runs SQL against the chain table or the FHIR store.
func tamper(t *testing.T, e *env, q string, args ...any) {
	t.Helper()
	if e.db.Postgres() {
		q = e.db.q(q)
	}
	res, err := e.db.SQL().Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s: no row changed", q)
	}
}

// written opens a recorder on url, writes n events and returns it with
// the chain row at seq.
func written(t *testing.T, url string, n int, seq int64) (*env, Row) {
	t.Helper()
	e := open(t, url, nil)
	write(t, e, n)
	return e, rowAt(t, e, seq)
}

func rowAt(t *testing.T, e *env, seq int64) Row {
	t.Helper()
	rows, err := e.db.Page(context.Background(), e.rec.Chain(), seq-1, 1)
	if err != nil || len(rows) != 1 || rows[0].Seq != seq {
		t.Fatalf("row %d: %v %v", seq, rows, err)
	}
	return rows[0]
}

// findings fails t unless rep is not OK and has exactly the findings
// want, in order, each with want's Kind and with its Chain, Seq and
// Resource where want sets them.
func findings(t *testing.T, rep *Report, want ...Finding) {
	t.Helper()
	if rep.OK || len(rep.Findings) != len(want) {
		t.Fatalf("findings = %+v, want %+v", rep.Findings, want)
	}
	for i, w := range want {
		f := rep.Findings[i]
		if f.Kind != w.Kind || w.Chain != "" && f.Chain != w.Chain || w.Seq != 0 && f.Seq != w.Seq || w.Resource != "" && f.Resource != w.Resource {
			t.Fatalf("finding %d = %+v, want %+v", i, f, w)
		}
	}
}

func TestTamperModified(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e, r := written(t, url, 6, 3)
		body := bytes.Replace(r.Body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
		tamper(t, e, "UPDATE audit_record SET body = ? WHERE chain_id = ? AND seq = ?", body, r.Chain, 3)
		// The chain copy fails its hash and no longer equals the resource.
		findings(t, verify(t, e), Finding{Kind: FindingModified, Chain: r.Chain, Seq: 3, Resource: "AuditEvent/" + r.ResourceID}, Finding{Kind: FindingModified})
	})
}

func TestTamperModifiedResource(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e, r := written(t, url, 4, 2)
		// Rewrite the served AuditEvent through the store (a privileged
		// database user editing the resource table).
		body := bytes.Replace(r.Body, []byte(`"outcome":"0"`), []byte(`"outcome":"8"`), 1)
		err := e.st.Update(context.Background(), func(tx store.Tx) error {
			w, err := prepareWrite(ex, &Row{Chain: r.Chain, Seq: r.Seq, ResourceID: r.ResourceID, Version: 2, Recorded: r.Recorded, Body: bytes.Replace(body, []byte(`"versionId":"1"`), []byte(`"versionId":"2"`), 1)}, nil, false)
			if err != nil {
				return err
			}
			w.Method = "PUT"
			return tx.Put(context.Background(), w)
		})
		if err != nil {
			t.Fatal(err)
		}
		findings(t, verify(t, e), Finding{Kind: FindingModified, Seq: 2, Resource: "AuditEvent/" + r.ResourceID})
	})
}

func TestTamperDeleted(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e, r := written(t, url, 6, 4)
		tamper(t, e, "DELETE FROM audit_record WHERE chain_id = ? AND seq = ?", r.Chain, 4)
		// The gap, and the resource no chain holds any more.
		findings(t, verify(t, e), Finding{Kind: FindingDeleted, Chain: r.Chain, Seq: 4}, Finding{Kind: FindingInserted, Resource: "AuditEvent/" + r.ResourceID})
	})
}

func TestTamperReordered(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e := open(t, url, nil)
		write(t, e, 6)
		a, b := rowAt(t, e, 2), rowAt(t, e, 3)
		tamper(t, e, "UPDATE audit_record SET seq = -1 WHERE chain_id = ? AND seq = 2", a.Chain)
		tamper(t, e, "UPDATE audit_record SET seq = 2 WHERE chain_id = ? AND seq = 3", a.Chain)
		tamper(t, e, "UPDATE audit_record SET seq = 3 WHERE chain_id = ? AND seq = -1", a.Chain)
		findings(t, verify(t, e), Finding{Kind: FindingReordered, Seq: 2, Resource: "AuditEvent/" + b.ResourceID},
			Finding{Kind: FindingReordered, Seq: 3, Resource: "AuditEvent/" + a.ResourceID})
	})
}

func TestTamperRewrittenAndTruncated(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		var stream bytes.Buffer
		e := open(t, url, func(c *Config) { c.Stream = &stream })
		write(t, e, 5)
		anchors, err := ReadAnchors(bytes.NewReader(stream.Bytes()))
		if err != nil || anchors[e.rec.Chain()].Seq != 5 {
			t.Fatalf("anchors %v %v", anchors, err)
		}
		// Recompute row 3's hash after editing it: row 4 no longer links.
		r := rowAt(t, e, 3)
		body := bytes.Replace(r.Body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
		tamper(t, e, "UPDATE audit_record SET body = ?, hash = ? WHERE chain_id = ? AND seq = 3", body, HashV2(r.Chain, 3, r.PrevHash, r.Watermark, body), r.Chain)
		// And drop the tail record.
		tamper(t, e, "DELETE FROM audit_record WHERE chain_id = ? AND seq = 5", r.Chain)
		rep, err := Verify(context.Background(), e.db, e.st, anchors)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int64{}
		for _, f := range rep.Findings {
			kinds[f.Kind] = f.Seq
		}
		if kinds[FindingBroken] != 4 || kinds[FindingTruncated] != 5 {
			t.Fatalf("findings = %+v", rep.Findings)
		}
		// Without the anchor the tail deletion is invisible but the
		// orphaned resource is not.
		rep = verify(t, e)
		if rep.OK {
			t.Fatal("verify passed")
		}
	})
}

func TestBALPValidates(t *testing.T) {
	r, _ := registry(t)
	v := validate.New(r)
	events := []Event{readEvent(1),
		{Kind: KindREST, Action: "E", Interaction: "search-type", Status: 200, Outcome: OutcomeSuccess, ClientID: "c", Address: "::1", Returned: 20,
			Entities: []Entity{{Role: "query", Query: "Observation?patient=1&code=x"}}},
		{Kind: KindLoginFailure, Outcome: OutcomeMinor, Address: "127.0.0.1", Description: "login failed"},
		{Kind: KindTokenIssued, ClientID: "c", CredentialID: "jti", Method: "client_credentials"},
		{Kind: KindAPIKeyRevoked, ClientID: "admin", Subject: "s"},
		{Kind: KindNetworkRefused, Address: "192.0.2.1", Outcome: OutcomeMinor, Status: 403},
		{Kind: KindREST, Action: "U", Interaction: "update", FHIRUser: "Patient/p", Status: 500, Outcome: OutcomeSerious},
	}
	for _, e := range events {
		b := Render(&e, "id1", time.Now(), Source{Site: base, Instance: "chain-1"})
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if issues := v.Validate(m); len(issues) > 0 {
			t.Errorf("%s: %v\n%s", e.Kind, issues, b)
		}
	}
	b := Render(&events[0], "id1", time.Now(), Source{Site: base, Instance: "chain-1"})
	for _, want := range []string{`"code":"rest"`, `"system":"http://hl7.org/fhir/restful-interaction","code":"read"`, `"action":"R"`, `"requestor":true`,
		`"reference":"Practitioner/p1"`, `"value":"app"`, `"address":"10.0.0.1"`, `"reference":"Patient/pat1"`, `"reference":"Observation/o1/_history/2"`, `"code":"110153"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("missing %s in %s", want, b)
		}
	}
}

func TestSanitizeQuery(t *testing.T) {
	c := Classify("GET", "/Observation", "patient=Patient/p9&access_token=SECRET&api_key=K1&client_assertion=A&password=P&Code=X&_count=5")
	for _, bad := range []string{"SECRET", "K1", "=A&", "=P&", "=X&"} {
		if strings.Contains(c.Query, bad) {
			t.Errorf("query %q contains %s", c.Query, bad)
		}
	}
	if !strings.Contains(c.Query, "_count=5") || !strings.Contains(c.Query, "access_token=%5Bredacted%5D") && !strings.Contains(c.Query, "access_token=[redacted]") {
		t.Errorf("query = %q", c.Query)
	}
	if c.Patient != "p9" || c.Interaction != "search-type" || c.Action != "E" {
		t.Errorf("classified = %+v", c)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ method, path, interaction, action string }{
		{"GET", "/Patient/1", "read", "R"},
		{"GET", "/Patient/1/_history/2", "vread", "R"},
		{"GET", "/Patient/1/_history", "history-instance", "R"},
		{"GET", "/Patient/_history", "history-type", "R"},
		{"GET", "/_history", "history-system", "R"},
		{"GET", "/Patient", "search-type", "E"},
		{"POST", "/Patient/_search", "search-type", "E"},
		{"GET", "/", "search-system", "E"},
		{"POST", "/", "transaction", "E"},
		{"POST", "/Patient", "create", "C"},
		{"PUT", "/Patient/1", "update", "U"},
		{"PATCH", "/Patient/1", "patch", "U"},
		{"DELETE", "/Patient/1", "delete", "D"},
		{"GET", "/Patient/1/$everything", "operation", "E"},
	} {
		c := Classify(tc.method, tc.path, "")
		if c.Interaction != tc.interaction || c.Action != tc.action {
			t.Errorf("%s %s = %s %s", tc.method, tc.path, c.Interaction, c.Action)
		}
	}
}

// slowCommitter records when Commit returns.
type fakeRecorder struct {
	mu       sync.Mutex
	events   []Event
	commit   chan struct{}
	fail     bool
	commited atomic.Bool
}

func (f *fakeRecorder) Record(_ context.Context, e Event) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func (f *fakeRecorder) Commit(ctx context.Context, e Event) error {
	<-f.commit
	f.Record(ctx, e)
	f.commited.Store(true)
	if f.fail {
		return ErrUnavailable
	}
	return nil
}

func TestStageWritesWait(t *testing.T) {
	fr := &fakeRecorder{commit: make(chan struct{})}
	h := routedStage(StageConfig{Recorder: fr})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", base+"/Patient/p1/_history/1")
		interaction.OutcomeFromContext(r.Context()).Resource = interaction.Ref{Type: "Patient", ID: "p1", Version: "1"}
		w.WriteHeader(201)
		w.Write([]byte(`{"resourceType":"Patient"}`))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	done := make(chan *http.Response)
	go func() {
		resp, err := http.Post(srv.URL+"/fhir/Patient", "application/fhir+json", strings.NewReader(`{}`))
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case <-done:
		t.Fatal("response released before the audit record was committed")
	case <-time.After(200 * time.Millisecond):
	}
	close(fr.commit)
	resp := <-done
	if resp.StatusCode != 201 || resp.Header.Get("Location") == "" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ev := fr.events[0]
	if ev.Action != "C" || len(ev.Entities) != 1 || ev.Entities[0].ID != "p1" || ev.Entities[0].Version != "1" || ev.Patient != "p1" {
		t.Fatalf("event = %+v", ev)
	}
}

func TestStageWriteFailsWhenAuditFails(t *testing.T) {
	fr := &fakeRecorder{commit: make(chan struct{}), fail: true}
	close(fr.commit)
	h := routedStage(StageConfig{Recorder: fr})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.Write([]byte(`{"resourceType":"Patient","id":"x"}`))
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("PUT", "/fhir/Patient/x", strings.NewReader("{}")))
	if rr.Code != 500 || !strings.Contains(rr.Body.String(), "OperationOutcome") || strings.Contains(rr.Body.String(), `"id":"x"`) {
		t.Fatalf("%d %s", rr.Code, rr.Body)
	}
}

func TestStageReadsAndAuditEventWrites(t *testing.T) {
	fr := &fakeRecorder{commit: make(chan struct{})}
	close(fr.commit)
	var called atomic.Int32
	h := routedStage(StageConfig{Recorder: fr})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
		interaction.OutcomeFromContext(r.Context()).Returned = 2
		w.Write([]byte(`{"resourceType":"Bundle","entry":[{"fullUrl":"a"},`))
		w.(http.Flusher).Flush()
		w.Write([]byte(`{"full`))
		w.Write([]byte(`Url":"b"}]}`))
	}))
	ctx := principal.NewContext(context.Background(), &principal.Principal{ClientID: "c1", Patient: "p7", TokenID: "jti1", Method: "bearer"})
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/fhir/Observation?code=1", nil).WithContext(ctx))
	if !rr.Flushed {
		t.Fatal("read response was not streamed")
	}
	ev := fr.events[0]
	if ev.Returned != 2 || ev.ClientID != "c1" || ev.Patient != "p7" || ev.CredentialID != "jti1" || ev.Interaction != "search-type" {
		t.Fatalf("event = %+v", ev)
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		path := "/fhir/AuditEvent/1"
		if m == "POST" {
			path = "/fhir/AuditEvent"
		}
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest(m, path, strings.NewReader("{}")).WithContext(ctx))
		if rr.Code != 405 || !strings.Contains(rr.Body.String(), "OperationOutcome") {
			t.Errorf("%s: %d %s", m, rr.Code, rr.Body)
		}
	}
	if called.Load() != 1 {
		t.Fatal("an AuditEvent write reached the handler")
	}
}

func TestAlerts(t *testing.T) {
	delivered := make(chan Alert, 10)
	fail := atomic.Int32{}
	fail.Store(1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Add(-1) >= 0 {
			w.WriteHeader(503) // first attempt fails: retried
			return
		}
		var a Alert
		json.NewDecoder(r.Body).Decode(&a)
		delivered <- a
	}))
	defer hook.Close()
	// Every alert raised is logged at once (before its delivery).
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	if err := CheckWebhook("http://10.0.0.1/hook"); err == nil {
		t.Fatal("http to a private address accepted")
	}
	if err := CheckWebhook("https://user:pw@example.com/"); err == nil {
		t.Fatal("credentials in URL accepted")
	}
	al, err := NewAlerter(AlertConfig{Webhook: hook.URL, VolumeLimit: 100, VolumeWindow: time.Hour, AuthFailureLimit: 3, AuthFailureWindow: time.Minute,
		Refusals: true, Backoff: 10 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	closeAlerter := sync.OnceFunc(al.Close)
	defer closeAlerter()
	for i := 0; i < 11; i++ {
		al.Observe(&Event{Kind: KindREST, ClientID: "bulk", Returned: 10})
	}
	al.Observe(&Event{Kind: KindREST, ClientID: "other", Returned: 99})
	for i := 0; i < 5; i++ {
		al.Observe(&Event{Kind: KindAuthnFailure, Address: "192.0.2.9"})
	}
	al.Observe(&Event{Kind: KindNetworkRefused, Address: "192.0.2.10"})
	al.Observe(&Event{Kind: KindNetworkRefused, Address: "192.0.2.10"})
	// Exactly three alerts were raised, so exactly three are delivered.
	mu.Lock()
	raised := strings.Count(logs.String(), `"msg":"audit alert"`)
	mu.Unlock()
	if raised != 3 {
		t.Fatalf("%d alerts raised, want 3: %s", raised, logs.String())
	}
	var got []Alert
	for range raised {
		select {
		case a := <-delivered:
			got = append(got, a)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d alerts delivered", len(got), raised)
		}
	}
	// Once the delivery goroutine has stopped, nothing else was posted.
	closeAlerter()
	if len(delivered) != 0 {
		t.Fatalf("%d alerts delivered twice", len(delivered))
	}
	rules := map[string]Alert{}
	for _, a := range got {
		rules[a.Rule] = a
	}
	if len(got) != 3 || rules[RuleVolume].ClientID != "bulk" || rules[RuleVolume].Count != 110 || rules[RuleAuthFailures].Address != "192.0.2.9" || rules[RuleRefused].Address != "192.0.2.10" {
		t.Fatalf("alerts = %+v", got)
	}
}

// TestIngestComplete records a burst without waiting for each record, then
// checks that every record is chained and copied into a searchable
// AuditEvent (the rate is measured by BenchmarkIngest).
func TestIngestComplete(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e := open(t, url, func(c *Config) { c.CopyDuty, c.EnqueueTimeout, c.DrainTimeout = 1, time.Hour, time.Hour })
		const n = 1000
		for i := 0; i < n-1; i++ {
			e.rec.Record(context.Background(), readEvent(i))
		}
		if err := e.rec.Commit(context.Background(), readEvent(n)); err != nil {
			t.Fatal(err)
		}
		e.rec.Close()
		if rep := verify(t, e); !rep.OK || rep.Records != n || rep.Pending != 0 {
			t.Fatalf("%+v", rep)
		}
	})
}

// BenchmarkIngest measures how fast records become durable in the chain
// and searchable as AuditEvents, at full copy speed, on both dialects:
//
//	go test -run '^$' -bench Ingest -benchtime 20000x ./internal/audit
func BenchmarkIngest(b *testing.B) {
	for _, d := range []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite:" + filepath.Join(b.TempDir(), "lapis.db") }},
		{"postgres", func(b *testing.B) string { return pgtest.New(b) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			e := open(b, d.url(b), func(c *Config) { c.CopyDuty, c.EnqueueTimeout, c.DrainTimeout = 1, time.Hour, time.Hour })
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N-1; i++ {
				e.rec.Record(context.Background(), readEvent(i))
			}
			if err := e.rec.Commit(context.Background(), readEvent(b.N)); err != nil {
				b.Fatal(err)
			}
			durable := time.Since(start)
			e.rec.Close()
			searchable := time.Since(start)
			b.ReportMetric(float64(b.N)/durable.Seconds(), "durable-records/s")
			b.ReportMetric(float64(b.N)/searchable.Seconds(), "searchable-records/s")
		})
	}
}

func TestLostRecordsAreLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	e := open(t, "sqlite:"+filepath.Join(t.TempDir(), "lapis.db"), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
	})
	e.rec.Close()
	if err := e.rec.Commit(context.Background(), readEvent(1)); err != ErrUnavailable {
		t.Fatalf("Commit after Close = %v", err)
	}
	e.rec.Record(context.Background(), readEvent(2))
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), `"msg":"audit record lost"`); n != 2 {
		t.Fatalf("%d lost records logged: %s", n, logs.String())
	}
	if strings.Contains(logs.String(), "jti-") {
		t.Fatal("the lost-record log line carries a credential id")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestStageTransactionEntities(t *testing.T) {
	fr := &fakeRecorder{commit: make(chan struct{})}
	close(fr.commit)
	h := routedStage(StageConfig{Recorder: fr})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		o := interaction.OutcomeFromContext(r.Context())
		o.BundleType = "batch"
		o.Written = []interaction.Ref{{Type: "Patient", ID: "p1", Version: "1"}, {Type: "Observation", ID: "o2", Version: "3"}}
		w.Write([]byte(`{"resourceType":"Bundle","type":"batch-response","entry":[]}`))
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("POST", "/fhir", strings.NewReader(`{"resourceType":"Bundle","type":"batch","entry":[]}`)))
	ev := fr.events[0]
	if ev.Interaction != "batch" || ev.Action != "E" || len(ev.Entities) != 2 || ev.Entities[1].Type != "Observation" || ev.Entities[1].Version != "3" || ev.Returned != 0 {
		t.Fatalf("event = %+v", ev)
	}
}

// A process that crashed after its chain commit but before the copy
// leaves rows only in the chain table: the next start copies them.
func TestRecoveryAfterCrash(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		ctx := context.Background()
		_, ix := registry(t)
		st, db := stores(t, url)
		rows := crashedChain(t, db, 3)
		rep, err := Verify(ctx, db, st, nil)
		if err != nil || !rep.OK || rep.Pending != 3 {
			t.Fatalf("before recovery: %+v %v", rep, err)
		}
		rec, err := Start(ctx, Config{DB: db, Store: st, Indexer: ix, Site: base, AnchorEvery: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		// The recorder copies the pending records in the background.
		poll.Try(time.Minute, func() bool {
			r, err := st.Read(ctx, "AuditEvent", "crashed-3")
			return err == nil && bytes.Equal(r.Body, rows[2].Body)
		})
		rec.Close()
		rep, err = Verify(ctx, db, st, nil)
		if err != nil || !rep.OK || rep.Pending != 0 || rep.Records != 3 || rep.Chains != 2 {
			t.Fatalf("after recovery: %+v %v", rep, err)
		}
	})
}

// crashedChain stores n records of a chain whose process stopped two
// minutes ago before copying them (ids crashed-1…n), and returns them.
func crashedChain(t *testing.T, db *DB, n int) []Row {
	t.Helper()
	chain, at := "crashed-chain", time.Now().Add(-2*time.Minute).UTC().Truncate(time.Millisecond)
	if err := db.StartChain(context.Background(), chain, "h", at); err != nil {
		t.Fatal(err)
	}
	var rows []Row
	prev := Genesis
	for i := 1; i <= n; i++ {
		ev := readEvent(i)
		id := fmt.Sprintf("crashed-%d", i)
		body := Render(&ev, id, at, Source{Site: base, Instance: chain})
		h := Hash(chain, int64(i), prev, body)
		rows = append(rows, Row{Chain: chain, Seq: int64(i), PrevHash: prev, Hash: h, ResourceID: id, Version: 1, Recorded: at, Body: body})
		prev = h
	}
	if err := db.Append(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// holdFirst holds the first transaction (the recovery's, at start) until
// release closes; every other passes.
type holdFirst struct {
	Updater
	first   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (h *holdFirst) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if h.first.CompareAndSwap(false, true) {
		close(h.held)
		<-h.release
	}
	return h.Updater.Update(ctx, fn)
}

// TestRecoveryBesideCopy: while the recovery of a crashed instance's
// records is in progress (held here), this process's own records are
// still copied, and its copy lag still measured.
func TestRecoveryBesideCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := "sqlite:" + filepath.Join(t.TempDir(), "lapis.db")
	_, db := stores(t, url)
	crashedChain(t, db, 3)
	h := &holdFirst{held: make(chan struct{}), release: make(chan struct{})}
	e := open(t, url, func(c *Config) { h.Updater, c.Store = c.Store, h })
	<-h.held // the recovery is copying the crashed chain
	if err := e.rec.Commit(ctx, readEvent(1)); err != nil {
		t.Fatal(err)
	}
	copied := poll.Try(time.Minute, func() bool { return e.rec.copied.Load() >= 1 })
	close(h.release)
	if !copied {
		t.Fatal("this process's record was not copied while the recovery ran")
	}
	e.rec.Close()
	if rep := verify(t, e); !rep.OK || rep.Pending != 0 || rep.Records != 4 {
		t.Fatalf("after recovery: %+v", rep)
	}
}

// The 00002 migration turns the per-record flag of 00001 into the
// chain's copied_seq.
func TestMigrationCopiedSeq(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openDB(t, url)
		dir, dialect := "migrations/sqlite", goose.DialectSQLite3
		if db.Postgres() {
			dir, dialect = "migrations/postgres", goose.DialectPostgres
		}
		fsys, _ := fs.Sub(migrations, dir)
		p, err := goose.NewProvider(dialect, db.SQL(), fsys, goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, 1); err != nil {
			t.Fatal(err)
		}
		tf := map[bool]string{true: "1", false: "0"}
		if db.Postgres() {
			tf = map[bool]string{true: "TRUE", false: "FALSE"}
		}
		exec := func(q string) {
			if _, err := db.SQL().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec("INSERT INTO audit_chain (chain_id, started_at) VALUES ('a', 0), ('b', 0), ('c', 0)")
		for _, r := range []struct {
			chain string
			seq   int
			done  bool
		}{{"a", 1, true}, {"a", 2, true}, {"a", 3, false}, {"a", 4, false}, {"b", 1, true}, {"b", 2, true}} {
			exec(fmt.Sprintf("INSERT INTO audit_record (chain_id, seq, prev_hash, hash, resource_id, version, recorded_at, body, materialized) VALUES ('%s', %d, '', '', 'x', 1, 0, '', %s)", r.chain, r.seq, tf[r.done]))
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatal(err)
		}
		for chain, want := range map[string]int64{"a": 2, "b": 2, "c": 0} {
			var got int64
			if err := db.SQL().QueryRow(db.q("SELECT copied_seq FROM audit_chain WHERE chain_id = ?"), chain).Scan(&got); err != nil || got != want {
				t.Errorf("chain %s: copied_seq %d (%v), want %d", chain, got, err, want)
			}
		}
		rows, err := db.Page(ctx, "a", 0, 10)
		if err != nil || len(rows) != 4 || !rows[1].Materialized || rows[2].Materialized {
			t.Fatalf("rows %+v %v", rows, err)
		}
	})
}

// TestHandoffDrained: the AuditEvents the writer hands to the copy are
// dropped once copied (nothing accumulates), the records are searchable
// and the chain verifies, on both dialects.
func TestHandoffDrained(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		e := open(t, url, nil)
		for i := range 60 {
			e.rec.Record(context.Background(), readEvent(i))
		}
		write(t, e, 5)
		e.rec.docsMu.Lock()
		left := len(e.rec.docs)
		e.rec.docsMu.Unlock()
		if left != 0 {
			t.Fatalf("%d handed-off AuditEvents kept after the copy", left)
		}
		if rep := verify(t, e); !rep.OK || rep.Records != 65 || rep.Pending != 0 {
			t.Fatalf("report = %+v", rep)
		}
	})
}

// TestCopyDuty checks the copy's share of a core against its lag: the
// configured duty up to the lag bound, then in proportion to the lag, up
// to the whole core.
func TestCopyDuty(t *testing.T) {
	for _, tc := range []struct {
		duty        float64
		lag, target time.Duration
		want        float64
	}{
		{0.25, 0, 30 * time.Second, 0.25},
		{0.25, 30 * time.Second, 30 * time.Second, 0.25},
		{0.25, 60 * time.Second, 30 * time.Second, 0.5},
		{0.25, 90 * time.Second, 30 * time.Second, 0.75},
		{0.25, 2 * time.Minute, 30 * time.Second, 1},
		{0.25, time.Hour, 30 * time.Second, 1},
		{0.1, time.Hour, -1, 0.1},
	} {
		if got := copyDuty(tc.duty, tc.lag, tc.target); got != tc.want {
			t.Errorf("copyDuty(%v, %v, %v) = %v, want %v", tc.duty, tc.lag, tc.target, got, tc.want)
		}
	}
}

// TestCopyLagAgesWhileUnreadable: while the chain cannot be read, the
// copy lag keeps growing from its last measure instead of standing still.
func TestCopyLagAgesWhileUnreadable(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var now atomic.Int64
	now.Store(t0.Add(50 * time.Second).UnixNano())
	e, _ := failedCopy(t, t0, func() time.Time { return time.Unix(0, now.Load()).UTC() }) // lag 50 s
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	now.Store(t0.Add(80 * time.Second).UnixNano())
	if !poll.Try(30*time.Second, func() bool { return e.rec.CopyLag() == 80*time.Second }) {
		t.Fatalf("lag while the chain cannot be read: %v, want 80s", e.rec.CopyLag())
	}
}

// failedCopy opens a recorder on a new SQLite database with the clock
// now, over a FHIR store that fails every transaction (downStore, failing
// until told otherwise), commits one event recorded at t0 and returns once
// the copy has measured its lag and failed.
func failedCopy(t *testing.T, t0 time.Time, now func() time.Time) (*env, *downStore) {
	t.Helper()
	fs := &downStore{tried: make(chan struct{}, 1)}
	fs.fail.Store(true)
	e := open(t, "sqlite:"+filepath.Join(t.TempDir(), "lapis.db"), func(c *Config) {
		fs.Updater, c.Store = c.Store, fs
		c.Now = now
	})
	ev := readEvent(1)
	ev.Time = t0
	if err := e.rec.Commit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	<-fs.tried
	return e, fs
}

// downStore fails every transaction while fail is set and reports
// each attempt on tried.
type downStore struct {
	Updater
	fail  atomic.Bool
	tried chan struct{}
}

func (f *downStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	select {
	case f.tried <- struct{}{}:
	default:
	}
	if f.fail.Load() {
		return errors.New("store unavailable")
	}
	return f.Updater.Update(ctx, fn)
}

// TestCopyLagReported checks that the copy reports how far searchable
// AuditEvents are behind the chain (the age of the oldest record not yet
// copied) while it cannot keep up, and 0 once it has caught up.
func TestCopyLagReported(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// 50 s after the record: under the minute after which recovery would
	// take the chain for another process's idle one.
	e, fs := failedCopy(t, t0, func() time.Time { return t0.Add(50 * time.Second) })
	if got := e.rec.CopyLag(); got != 50*time.Second {
		t.Fatalf("lag while the copy fails: %v, want 50s", got)
	}
	fs.fail.Store(false)
	e.rec.Close() // the copy catches up before Close returns
	if got := e.rec.CopyLag(); got != 0 {
		t.Fatalf("lag after the copy caught up: %v, want 0", got)
	}
}
