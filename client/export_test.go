package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBulk is a stand-in Bulk Data 2.0 server: kick-off, status (in
// progress for the first polls, then the manifest), NDJSON files with
// Range support, and DELETE to cancel.
type fakeBulk struct {
	srv          *httptest.Server
	mu           sync.Mutex
	kickoff      *http.Request
	pollsLeft    int
	cancelled    bool
	files        map[string][]byte
	fileRequests []string // "name range"
	requireToken string
	// truncateOnce cuts the first download of each file after half.
	truncateOnce map[string]bool
	otherOrigin  string
}

func newFakeBulk(t *testing.T) *fakeBulk {
	b := &fakeBulk{pollsLeft: 2, files: map[string][]byte{
		"patient-1.ndjson": []byte(strings.Repeat(`{"resourceType":"Patient","id":"p"}`+"\n", 500)),
		"obs-1.ndjson":     []byte(strings.Repeat(`{"resourceType":"Observation","id":"o"}`+"\n", 800)),
		"err-1.ndjson":     []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing"}]}` + "\n"),
	}, truncateOnce: map[string]bool{}}
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if b.requireToken != "" && r.Header.Get("Authorization") != "Bearer "+b.requireToken {
			writeOutcome(w, 401, "login", "token required")
			return false
		}
		return true
	}
	kick := func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		b.mu.Lock()
		b.kickoff = r
		b.mu.Unlock()
		if r.Header.Get("Prefer") != "respond-async" {
			writeOutcome(w, 400, "invalid", "Prefer: respond-async is required")
			return
		}
		if r.URL.Query().Get("_outputFormat") == "text/csv" {
			writeOutcome(w, 400, "not-supported", "_outputFormat text/csv is not supported")
			return
		}
		w.Header().Set("Content-Location", "http://"+r.Host+"/bulkstatus/job-1")
		w.WriteHeader(http.StatusAccepted)
	}
	mux.HandleFunc("GET /fhir/$export", kick)
	mux.HandleFunc("GET /fhir/Patient/$export", kick)
	mux.HandleFunc("GET /fhir/Group/{id}/$export", kick)
	// job answers for the job's status URL, with b.mu held: false (and
	// answered) when the caller is not authorised or the job is gone.
	job := func(w http.ResponseWriter, r *http.Request, gone string) bool {
		if !auth(w, r) {
			return false
		}
		if b.cancelled {
			writeOutcome(w, 404, "not-found", gone)
			return false
		}
		return true
	}
	mux.HandleFunc("GET /bulkstatus/job-1", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !job(w, r, "job was cancelled") {
			return
		}
		if b.pollsLeft > 0 {
			b.pollsLeft--
			w.Header().Set("X-Progress", fmt.Sprintf("%d%% done", 100-50*b.pollsLeft))
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		host := "http://" + r.Host
		fileHost := host
		if b.otherOrigin != "" {
			fileHost = b.otherOrigin
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"transactionTime": "2026-01-02T03:04:05Z", "request": host + "/fhir/$export", "requiresAccessToken": b.requireToken != "",
			"output": []any{
				map[string]any{"type": "Patient", "url": fileHost + "/files/patient-1.ndjson", "count": 500},
				map[string]any{"type": "Observation", "url": fileHost + "/files/obs-1.ndjson", "count": 800},
			},
			"error": []any{map[string]any{"type": "OperationOutcome", "url": fileHost + "/files/err-1.ndjson"}},
		})
	})
	mux.HandleFunc("DELETE /bulkstatus/job-1", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !job(w, r, "no such job") {
			return
		}
		b.cancelled = true
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /files/{name}", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		name := r.PathValue("name")
		b.mu.Lock()
		data, ok := b.files[name]
		b.fileRequests = append(b.fileRequests, name+" "+r.Header.Get("Range"))
		cut := b.truncateOnce[name]
		b.truncateOnce[name] = false
		b.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		if cut {
			// Promise everything, send half, then drop the connection.
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.WriteHeader(200)
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	})
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func TestExportKickoffPollWaitDownload(t *testing.T) {
	b := newFakeBulk(t)
	c := newTestClient(t, b.srv.URL+"/fhir")
	waits := recordSleeps(c)
	ctx := context.Background()
	since := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	job, err := c.Export(ctx, ExportRequest{Level: "group", GroupID: "g1", Types: []string{"Patient", "Observation"}, Since: since,
		TypeFilters: []string{"Observation?category=laboratory"}})
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	k := b.kickoff
	b.mu.Unlock()
	q := k.URL.Query()
	if k.URL.Path != "/fhir/Group/g1/$export" || q.Get("_type") != "Patient,Observation" || q.Get("_since") != "2025-06-01T00:00:00Z" ||
		q.Get("_typeFilter") != "Observation?category=laboratory" || k.Header.Get("Accept") != fhirJSON {
		t.Fatalf("kick-off = %s %v %v", k.URL.Path, q, k.Header)
	}
	if job.URL != b.srv.URL+"/bulkstatus/job-1" {
		t.Fatalf("job URL = %s", job.URL)
	}
	var progress []string
	m, err := job.Wait(ctx, func(s ExportStatus) { progress = append(progress, s.Progress) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(progress, ",") != "50% done,100% done" || len(*waits) != 2 || (*waits)[0] != 3*time.Second {
		t.Fatalf("progress %v waits %v", progress, *waits)
	}
	if len(m.Output) != 2 || m.Output[1].Count != 800 || m.TransactionTime.IsZero() || len(m.Error) != 1 {
		t.Fatalf("manifest = %+v", m)
	}

	dir := t.TempDir()
	var last [2]int64
	err = job.DownloadAll(ctx, m, dir, func(f ExportOutput, done, total int64) { last = [2]int64{done, total} })
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range append(m.Output, m.Error...) {
		got, err := os.ReadFile(filepath.Join(dir, OutputFileName(out)))
		name := out.URL[strings.LastIndex(out.URL, "/")+1:]
		if err != nil || !bytes.Equal(got, b.files[name]) {
			t.Fatalf("%s: %v (%d bytes)", name, err, len(got))
		}
	}
	if last[0] != last[1] || last[0] == 0 {
		t.Errorf("last progress = %v", last)
	}
	// Downloading again skips the completed files.
	b.mu.Lock()
	n := len(b.fileRequests)
	b.mu.Unlock()
	if err := job.DownloadAll(ctx, m, dir, nil); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.fileRequests) != n {
		t.Fatalf("completed files fetched again: %v", b.fileRequests[n:])
	}
}

func TestExportDownloadResumesWithRange(t *testing.T) {
	b := newFakeBulk(t)
	b.pollsLeft = 0
	b.truncateOnce["obs-1.ndjson"] = true
	c := newTestClient(t, b.srv.URL+"/fhir")
	ctx := context.Background()
	job, err := c.Export(ctx, ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := job.Poll(ctx)
	if err != nil || !st.Complete {
		t.Fatalf("poll: %v %+v", err, st)
	}
	out := st.Manifest.Output[1]
	dir := t.TempDir()
	err = job.Download(ctx, out, dir, nil)
	if err == nil {
		t.Fatal("interrupted download reported success")
	}
	part := filepath.Join(dir, OutputFileName(out)+".part")
	fi, serr := os.Stat(part)
	if serr != nil || fi.Size() == 0 {
		t.Fatalf("no partial file after interruption: %v", serr)
	}
	// A later process resumes the job from its URL and the partial file.
	job2, err := ResumeExport(c, job.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := job2.Download(ctx, out, dir, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, OutputFileName(out)))
	if !bytes.Equal(got, b.files["obs-1.ndjson"]) {
		t.Fatalf("resumed file differs: %d vs %d bytes", len(got), len(b.files["obs-1.ndjson"]))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	want := fmt.Sprintf("obs-1.ndjson bytes=%d-", fi.Size())
	if b.fileRequests[len(b.fileRequests)-1] != want {
		t.Fatalf("file requests = %v, want last %q", b.fileRequests, want)
	}
	if _, err := os.Stat(part); !os.IsNotExist(err) {
		t.Fatal(".part file left behind")
	}
}

func TestExportCancelAndErrors(t *testing.T) {
	b := newFakeBulk(t)
	c := newTestClient(t, b.srv.URL+"/fhir")
	ctx := context.Background()
	job, err := c.Export(ctx, ExportRequest{Level: "patient"})
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := job.Poll(ctx); !IsNotFound(err) {
		t.Fatalf("poll after cancel: %v", err)
	}
	if err := job.Cancel(ctx); !IsNotFound(err) {
		t.Fatalf("second cancel: %v", err)
	}
	// Kick-off refused with an OperationOutcome.
	_, err = c.Export(ctx, ExportRequest{OutputFormat: "text/csv"})
	var fe *Error
	if !errors.As(err, &fe) || fe.StatusCode != 400 || !strings.Contains(fe.Outcome.String(), "text/csv") {
		t.Fatalf("refused kick-off: %v", err)
	}
	// Resume only on the server's origin.
	if _, err := ResumeExport(c, "https://elsewhere.example/bulkstatus/1"); err == nil {
		t.Fatal("foreign status URL accepted")
	}
	// Waiting stops when the context ends.
	b2 := newFakeBulk(t)
	b2.pollsLeft = 1000
	c2 := newTestClient(t, b2.srv.URL+"/fhir")
	j2, err := c2.Export(ctx, ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := j2.Wait(short, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v", err)
	}
}

func TestExportTokenOnlyToOwnOrigin(t *testing.T) {
	b := newFakeBulk(t)
	b.pollsLeft = 0
	b.requireToken = "bulk-token"
	c := newTestClient(t, b.srv.URL+"/fhir", WithAuth(BearerToken("bulk-token")))
	ctx := context.Background()
	job, err := c.Export(ctx, ExportRequest{Types: []string{"Patient"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := job.Wait(ctx, nil)
	if err != nil || !m.RequiresAccessToken {
		t.Fatalf("%v %+v", err, m)
	}
	if err := job.Download(ctx, m.Output[0], t.TempDir(), nil); err != nil {
		t.Fatalf("same-origin download with token: %v", err)
	}
	// Files that need the token but live elsewhere are refused, and the
	// other host never sees a request.
	var hits int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer other.Close()
	b.otherOrigin = other.URL
	st, err := job.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Download(ctx, st.Manifest.Output[0], t.TempDir(), nil); err == nil || hits != 0 {
		t.Fatalf("cross-origin token download: err %v hits %d", err, hits)
	}
}

func TestOutputFileNameIsSafe(t *testing.T) {
	for _, o := range []ExportOutput{{Type: "../../etc/passwd", URL: "x"}, {Type: "", URL: "y"}, {Type: "Patient", URL: "https://x/a/../../b"}} {
		n := OutputFileName(o)
		if strings.ContainsAny(n, `/\`) || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".ndjson") {
			t.Errorf("unsafe name %q for %+v", n, o)
		}
	}
	a, b := OutputFileName(ExportOutput{Type: "Patient", URL: "u1"}), OutputFileName(ExportOutput{Type: "Patient", URL: "u2"})
	if a == b {
		t.Error("two files of one type share a name")
	}
}
