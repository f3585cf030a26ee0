package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestPostgresRestart is the PostgreSQL restart check of issue 16, which
// TestCluster cannot run on the machine's shared PostgreSQL: two lapis
// serve instances on a private PostgreSQL server, under a write load,
// while the server is stopped and started again. Meanwhile /readyz answers
// 503 naming the database and requests fail promptly with a 5xx
// OperationOutcome; once PostgreSQL is back both instances are ready and
// write again without a restart, every acknowledged write is readable
// exactly once, and the audit chains verify.
func TestPostgresRestart(t *testing.T) {
	// Not parallel: what it counts while PostgreSQL restarts (failed
	// requests, the time to serve again) assumes the machine is not also
	// running another end-to-end test; it runs before them, alone.
	if testing.Short() {
		t.Skip("PostgreSQL restart test: not in -short")
	}
	pg := pgtest.Private(t)
	kek := writeKEK(t)
	bin := lapistest.Binary(t)
	inst := make([]*lapistest.Server, 2)
	for i := range inst {
		inst[i] = lapistest.Start(t, lapistest.Options{Bin: bin, Database: pg.URL,
			Args: []string{"--kek-file", kek, "--rate-limit-patient", "0"}})
	}
	var key struct{ Key string }
	decodeJSON(t, inst[0].MustCLI(t, "", "apikey", "create", "--name", "load", "--scope", "system/*.cruds", "--json"), &key)
	// A hung request fails the load instead of the test's deadline.
	c := &cluster{t: t, key: key.Key, hc: &http.Client{Timeout: 15 * time.Second}}

	l := startWriteLoad(c, inst, 4)
	l.waitOK(t, 20)

	pg.Stop()
	stopped := time.Now()
	for i, s := range inst {
		poll.Until(t, 30*time.Second, fmt.Sprintf("instance %d not ready without PostgreSQL", i+1), func() bool {
			st, b, _, _ := c.do("GET", s.Origin+"/readyz", nil, "")
			return st == 503 && strings.Contains(string(b), "fhir-database")
		})
	}
	notReady := time.Since(stopped)
	// Writes fail on both instances (checked for their answers below).
	poll.Until(t, 30*time.Second, "writes fail on both instances", func() bool {
		return l.failedOn[0].Load() >= 3 && l.failedOn[1].Load() >= 3
	})

	pg.Start()
	back := time.Now()
	for i, s := range inst {
		poll.Until(t, 30*time.Second, fmt.Sprintf("instance %d ready again", i+1), func() bool {
			st, _, _, _ := c.do("GET", s.Origin+"/readyz", nil, "")
			return st == 200
		})
	}
	ready := time.Since(back)
	okAt := [2]int64{l.okOn[0].Load(), l.okOn[1].Load()}
	poll.Until(t, 30*time.Second, "writes succeed again on both instances", func() bool {
		return l.okOn[0].Load() >= okAt[0]+5 && l.okOn[1].Load() >= okAt[1]+5
	})
	writing := time.Since(back)
	bad := l.finish()

	failed := l.failedOn[0].Load() + l.failedOn[1].Load()
	t.Logf("FIGURE PostgreSQL restart: both instances not ready %v after PostgreSQL stopped", notReady.Round(time.Millisecond))
	t.Logf("FIGURE PostgreSQL restart: ready again %v and writing again %v after PostgreSQL answered", ready.Round(time.Millisecond), writing.Round(time.Millisecond))
	t.Logf("FIGURE PostgreSQL restart: %d writes acknowledged, %d failed during the outage (all 5xx OperationOutcome: %v), slowest failure %v",
		len(l.acked), failed, len(bad) == 0, time.Duration(l.slowestFail.Load()).Round(time.Millisecond))
	for _, b := range bad {
		t.Error("during the outage: " + b)
	}
	for i, s := range inst {
		if strings.Contains(s.Logs(), "panic") {
			t.Errorf("instance %d panicked:\n%s", i+1, s.Logs())
		}
	}

	// Every acknowledged write is readable, exactly once.
	count := func(mrn string) int {
		st, b, _, err := c.do("GET", inst[0].URL("/Patient?_summary=count&identifier="+url.QueryEscape("http://example.org/mrn|"+mrn)), nil, c.key)
		var bundle struct{ Total int }
		_ = json.Unmarshal(b, &bundle)
		if err != nil || st != 200 {
			t.Errorf("search identifier %s: %d %v", mrn, st, err)
		}
		return bundle.Total
	}
	eachConcurrently(l.acked, func(id, mrn string) {
		if n := count(mrn); n != 1 {
			t.Errorf("acknowledged write Patient/%s (identifier %s): found %d times (want exactly 1)", id, mrn, n)
		}
	})
	// A write committed just before PostgreSQL stopped, whose audit record
	// could then not be written, is answered 500 "outcome unknown": it may
	// be stored (once at most).
	stored := 0
	for _, mrn := range l.unknown {
		n := count(mrn)
		if n > 1 {
			t.Errorf("write with unknown outcome (identifier %s): found %d times", mrn, n)
		}
		stored += n
	}
	t.Logf("FIGURE PostgreSQL restart: %d writes answered 500 \"outcome unknown\", %d of them stored (their audit record lost)", len(l.unknown), stored)
	for _, s := range inst {
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if r := inst[0].CLI(t, "", "audit", "verify"); r.Code != 0 {
		t.Fatalf("lapis audit verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// writeLoad posts Patients with unique identifiers to the instances in
// turn: load's acked holds every write answered 201 (id -> identifier),
// its failures every failure that is not a 5xx OperationOutcome.
type writeLoad struct {
	*load
	okOn        [2]atomic.Int64
	failedOn    [2]atomic.Int64
	slowestFail atomic.Int64 // nanoseconds
	unknown     []string     // identifiers of writes answered "outcome unknown" (under mu)
}

func startWriteLoad(c *cluster, inst []*lapistest.Server, workers int) *writeLoad {
	l := &writeLoad{load: &load{c: c, stop: make(chan struct{}), acked: map[string]string{}}}
	var seq atomic.Int64
	l.run(workers, func(w int) {
		n := seq.Add(1)
		i := int(n % int64(len(inst)))
		mrn := fmt.Sprintf("PgRestart%d-%d", w, n)
		start := time.Now()
		st, b, _, err := c.do("POST", inst[i].URL("/Patient"), mustJSON(patient(mrn)), c.key)
		if err == nil && st == 201 {
			var p struct{ ID string }
			_ = json.Unmarshal(b, &p)
			l.mu.Lock()
			l.acked[p.ID] = mrn
			l.mu.Unlock()
			l.ok.Add(1)
			l.okOn[i].Add(1)
			return
		}
		l.failedOn[i].Add(1)
		took := int64(time.Since(start))
		for old := l.slowestFail.Load(); took > old && !l.slowestFail.CompareAndSwap(old, took); old = l.slowestFail.Load() {
		}
		var oo struct{ ResourceType string }
		_ = json.Unmarshal(b, &oo)
		l.mu.Lock()
		defer l.mu.Unlock()
		if st == 500 && strings.Contains(string(b), "outcome of this request is unknown") {
			l.unknown = append(l.unknown, mrn)
		}
		if err != nil || st < 500 || oo.ResourceType != "OperationOutcome" {
			l.failures = append(l.failures, fmt.Sprintf("POST on instance %d: %d %v %.200s", i+1, st, err, b))
		}
	})
	return l
}
