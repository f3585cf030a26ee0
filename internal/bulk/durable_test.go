package bulk_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// slowExport names few types and is written at 5 resources/s (with
// --export-rate 5): about two seconds, long enough to stop midway.
const slowExport = "/$export?_type=Patient,Observation,Condition"

var slowWant = want("Patient", []string{"p1", "p2", "p3"}, "Observation", []string{"o1", "o2", "o3", "o4"}, "Condition", []string{"c1", "c2"})

// jobID is the last segment of a status URL.
func jobID(status string) string { return status[strings.LastIndex(status, "/")+1:] }

// waitRunning polls until a worker has claimed the job.
func waitRunning(t *testing.T, s *lapistest.Server, key, status string) {
	t.Helper()
	poll.Until(t, 20*time.Second, "job running", func() bool {
		r := s.Do(t, "GET", status, nil, "X-API-Key", key)
		return r.Status == http.StatusAccepted && r.Header.Get("X-Progress") != "queued"
	})
}

// waitFolder polls until a running job has its attempt folder.
func waitFolder(t *testing.T, dataDir, job string) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the running job's folder", func() bool {
		return len(attempts(t, dataDir, job)) == 1
	})
}

// attempts lists the attempt folders of a job.
func attempts(t *testing.T, dataDir, job string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dataDir, "export", job))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestExportRestart kills the server (SIGKILL) while a job writes, starts
// it again, and checks that the job is taken over and finishes with
// complete, correct files.
func TestExportRestart(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, "--export-rate", "5", "--export-lease", "1s")
		st := e.start(t, e.sys, slowExport)
		waitRunning(t, e.Server, e.sys, st)
		waitFolder(t, e.DataDir, jobID(st))
		if err := e.Kill(); err != nil {
			t.Fatal(err)
		}
		if got := attempts(t, e.DataDir, jobID(st)); len(got) != 1 || got[0] != "a1" {
			t.Fatalf("attempt folders after the kill: %v", got)
		}
		if err := e.Restart(); err != nil {
			t.Fatal(err)
		}
		m, _ := e.wait(t, e.sys, st)
		check(t, "after restart", e.contents(t, e.sys, m), slowWant)
		if got := attempts(t, e.DataDir, jobID(st)); len(got) != 1 || got[0] != "a2" {
			t.Errorf("attempt folders after the takeover: %v (want the rewrite a2 only)", got)
		}
	})
}

// TestExportInstances runs three instances on one PostgreSQL database and
// one export folder: A only accepts jobs (no workers), W starts the job
// and is killed midway, B (started after) takes it over; A serves the
// status, the files and a cancellation.
func TestExportInstances(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	dir := t.TempDir()
	a := newEnv(t, db, "--export-workers", "0")
	// The instances of one cluster share the key-encryption key.
	kek := filepath.Join(a.DataDir, "auth-kek")
	w := lapistest.Start(t, lapistest.Options{Database: db, DataDir: dir, Args: []string{"--kek-file", kek, "--export-dir", filepath.Join(a.DataDir, "export"), "--export-rate", "5", "--export-lease", "1s"}})
	st := a.start(t, a.sys, slowExport)
	waitRunning(t, a.Server, a.sys, st)
	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
	lapistest.Start(t, lapistest.Options{Database: db, DataDir: dir, Args: []string{"--kek-file", kek, "--export-dir", filepath.Join(a.DataDir, "export"), "--export-lease", "1s"}})
	m, _ := a.wait(t, a.sys, st)
	check(t, "taken over by another instance", a.contents(t, a.sys, m), slowWant)
	if got := attempts(t, a.DataDir, jobID(st)); len(got) != 1 || got[0] != "a2" {
		t.Errorf("attempt folders: %v", got)
	}
	// Cancelled on A while B runs it.
	st2 := a.start(t, a.sys, slowExport)
	if r := a.Do(t, "DELETE", st2, nil, "X-API-Key", a.sys); r.Status != http.StatusAccepted {
		t.Fatalf("cancel on A: %d", r.Status)
	}
	if r := a.Do(t, "GET", st2, nil, "X-API-Key", a.sys); r.Status != http.StatusNotFound {
		t.Errorf("status after cancel: %d", r.Status)
	}
}

// TestExportQueue checks the per-client cap on unfinished jobs (429 with
// Retry-After only beyond it) and the expiry of finished jobs.
func TestExportQueue(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, "--export-workers", "0", "--export-max-per-client", "2")
		first := e.start(t, e.sys, "/$export")
		e.start(t, e.sys, "/$export")
		r := e.kick(t, e.sys, "/$export")
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "30" || !isOutcome(r.Body) {
			t.Errorf("third job: %d %v %s", r.Status, r.Header, r.Body)
		}
		e.start(t, e.other, "/$export") // another client is not capped by the first's jobs
		if r := e.Do(t, "DELETE", first, nil, "X-API-Key", e.sys); r.Status != http.StatusAccepted {
			t.Fatalf("cancel: %d", r.Status)
		}
		e.start(t, e.sys, "/$export")
	})
}

// TestExportExpiry checks that a finished job and its files are removed
// after --export-expire.
func TestExportExpiry(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, "--export-expire", "1s", "--export-file-size", "1KiB")
		st := e.start(t, e.sys, "/$export?_type=Patient,Observation")
		m, resp := e.wait(t, e.sys, st)
		// Files split at the size bound, one type each, every line whole.
		check(t, "split files", e.contents(t, e.sys, m), want("Patient", []string{"p1", "p2", "p3"}, "Observation", []string{"o1", "o2", "o3", "o4"}))
		if len(m.Output) < 3 {
			t.Errorf("%d files, want the Observations split", len(m.Output))
		}
		if exp, err := http.ParseTime(resp.Header.Get("Expires")); err != nil || exp.Before(time.Now().Add(-time.Minute)) {
			t.Errorf("Expires %q", resp.Header.Get("Expires"))
		}
		poll.Until(t, 20*time.Second, "job expired", func() bool {
			return e.Do(t, "GET", st, nil, "X-API-Key", e.sys).Status == http.StatusNotFound
		})
		if r := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys); r.Status != http.StatusNotFound {
			t.Errorf("file after expiry: %d", r.Status)
		}
		poll.Until(t, 10*time.Second, "files removed", func() bool { return len(attempts(t, e.DataDir, jobID(st))) == 0 })
	})
}

// TestExportRevoked revokes the key that started a job while the job
// writes: the job stops, its files are removed and the failure is an
// AuditEvent.
func TestExportRevoked(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, dbURL string) {
		stream := filepath.Join(t.TempDir(), "audit.jsonl")
		// 9 resources at 1/s: the job outlasts the revocation by far; the
		// credential is re-checked every Lease/3.
		e := newEnv(t, dbURL, "--export-rate", "1", "--export-lease", "1s", "--audit-stream", stream)
		key, id := e.key(t, "system/*.rs", "")
		st := e.start(t, key, slowExport)
		waitRunning(t, e.Server, key, st)
		waitFolder(t, e.DataDir, jobID(st))
		e.MustCLI(t, "", "apikey", "revoke", id)
		poll.Until(t, 20*time.Second, "the revoked job's files removed", func() bool {
			_, err := os.Stat(filepath.Join(e.DataDir, "export", jobID(st)))
			return os.IsNotExist(err)
		})
		poll.Until(t, 10*time.Second, "the revocation audited", func() bool {
			b, _ := os.ReadFile(stream)
			return strings.Contains(string(b), `"outcomeDesc":"bulk export failed: the credential that started this export was revoked"`)
		})
		// The job notices the revocation from the database; the server's
		// credential cache drops the key at its next revocation-log poll
		// (250 ms), after which the key gets 401 everywhere.
		poll.Until(t, 10*time.Second, "status with the revoked key: 401", func() bool {
			return e.Do(t, "GET", st, nil, "X-API-Key", key).Status == http.StatusUnauthorized
		})
	})
}
