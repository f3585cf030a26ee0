package activity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/testclock"
)

func dialects(t *testing.T, fn func(t *testing.T, db *database.DB)) { dbtest.Both(t, fn) }

// sink records what passes through.
type sink struct {
	mu        sync.Mutex
	events    []audit.Event
	committed int
}

func (s *sink) Record(_ context.Context, e audit.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *sink) Commit(ctx context.Context, e audit.Event) error {
	s.mu.Lock()
	s.committed++
	s.mu.Unlock()
	s.Record(ctx, e)
	return nil
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newRecorder(t *testing.T, db *database.DB, next audit.Sink, o Options) *Recorder {
	t.Helper()
	r, err := NewRecorder(context.Background(), db, next, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func rest(cred string, at time.Time, status int, ix, route string, lat time.Duration) audit.Event {
	return audit.Event{Kind: audit.KindREST, Time: at, ClientID: cred, Status: status, Interaction: ix, Route: route, Latency: lat,
		Patient: "secret-patient", Entities: []audit.Entity{{Type: "Observation", ID: "secret-id"}}}
}

func TestRecorderQueries(t *testing.T) {
	dialects(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		c := testclock.New(t0.Add(2 * time.Hour))
		next := &sink{}
		r := newRecorder(t, db, next, Options{Now: c.Now})
		events := []audit.Event{
			rest("app", t0, 200, "read", "GET /fhir/Observation/{id}", 3*time.Millisecond),
			rest("app", t0.Add(30*time.Second), 200, "search-type", "GET /fhir/Observation?…", 9*time.Millisecond),
			rest("app", t0.Add(61*time.Second), 404, "read", "GET /fhir/Patient/{id}", time.Millisecond),
			func() audit.Event {
				e := rest("app", t0.Add(5*time.Minute), 403, "search-type", "GET /fhir/Condition?…", time.Millisecond)
				e.Cause = string(httpx.CauseScope)
				return e
			}(),
			{Kind: audit.KindRateLimited, Time: t0.Add(6 * time.Minute), ClientID: "app", Status: 429, Route: "GET /fhir/Observation?…", Occurrences: 3},
			{Kind: audit.KindNetworkRefused, Time: t0.Add(7 * time.Minute), ClientID: "app", Status: 403},
			{Kind: audit.KindAuthnFailure, Time: t0.Add(8 * time.Minute), ClientID: "key1", Status: 401, Cause: string(httpx.CauseCredential)},
			rest("other", t0, 500, "create", "POST /fhir/Observation", 20*time.Millisecond),
			// Not activity: no client, no status, another kind.
			rest("", t0, 200, "read", "GET /fhir/Patient/{id}", 0),
			{Kind: audit.KindLogin, Time: t0, ClientID: "app", Status: 200},
			{Kind: audit.KindREST, Time: t0, ClientID: "app"},
		}
		for i, e := range events {
			if i%2 == 0 {
				if err := r.Commit(ctx, e); err != nil {
					t.Fatal(err)
				}
			} else {
				r.Record(ctx, e)
			}
		}
		r.Flush()
		if len(next.events) != len(events) || next.committed != (len(events)+1)/2 {
			t.Fatalf("next got %d events (%d committed), want all %d passed on", len(next.events), next.committed, len(events))
		}
		if r.Written() != 8 || r.Dropped() != 0 {
			t.Fatalf("written %d dropped %d, want 8 and 0", r.Written(), r.Dropped())
		}

		pts, err := r.Series(ctx, []string{"app"}, t0, t0.Add(10*time.Minute), 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 2 || !pts[0].Start.Equal(t0) || pts[0].Counts != [4]int64{2, 0, 1, 0} || pts[1].Counts != [4]int64{0, 0, 5, 0} {
			t.Fatalf("series: %+v", pts)
		}
		pts, err = r.Series(ctx, []string{"app", "other", "key1"}, t0, t0.Add(3*time.Minute), time.Minute)
		if err != nil || len(pts) != 3 || pts[0].Counts != [4]int64{2, 0, 0, 1} || pts[1].Counts != [4]int64{0, 0, 1, 0} || pts[2].Total() != 0 {
			t.Fatalf("series of three: %+v %v", pts, err)
		}

		rec, err := r.Recent(ctx, []string{"app"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec) != 6 || rec[0].Cause != "network" || rec[0].Interaction != "other" || rec[5].Route != "GET /fhir/Observation/{id}" || rec[5].LatencyMS != 3 || rec[5].Cause != "" {
			t.Fatalf("recent: %+v", rec)
		}
		for _, q := range rec {
			if strings.Contains(q.Route, "secret") || q.Credential != "app" {
				t.Fatalf("recent leaks or mixes: %+v", q)
			}
		}
		if rec, _ := r.Recent(ctx, []string{"app"}, 2); len(rec) != 2 {
			t.Fatalf("limit 2: %d", len(rec))
		}

		errs, err := r.Errors(ctx, []string{"app"}, t0)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"rate-limit": 3, "not-found": 1, "scope": 1, "network": 1}
		if len(errs) != len(want) || errs[0].Cause != "rate-limit" || errs[0].Route != "GET /fhir/Observation?…" || errs[0].Status != 429 || !errs[0].LastSeen.Equal(t0.Add(6*time.Minute)) {
			t.Fatalf("errors: %+v", errs)
		}
		for _, g := range errs {
			if want[g.Cause] != g.Count {
				t.Errorf("errors of %s: %d, want %d", g.Cause, g.Count, want[g.Cause])
			}
		}
		if errs, _ := r.Errors(ctx, []string{"key1"}, t0); len(errs) != 1 || errs[0].Cause != "credential" {
			t.Fatalf("key errors: %+v", errs)
		}
		if errs, _ := r.Errors(ctx, []string{"app"}, t0.Add(time.Hour)); len(errs) != 0 {
			t.Fatalf("errors since a later hour: %+v", errs)
		}

		tot, err := r.Totals(ctx, []string{"app"}, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if tot.Requests != 8 || tot.ByClass != [4]int64{2, 0, 6, 0} || tot.ByStatus[429] != 3 || tot.ByInteraction["read"] != 2 || tot.LatencyMaxMS != 9 {
			t.Fatalf("totals: %+v", tot)
		}
		if got := (14.0) / 8; tot.LatencyMeanMS != got {
			t.Errorf("mean latency %v, want %v", tot.LatencyMeanMS, got)
		}
		// Another credential sees nothing of app's.
		if rec, _ := r.Recent(ctx, []string{"nobody"}, 10); len(rec) != 0 {
			t.Fatalf("nobody's recent: %+v", rec)
		}
	})
}

func TestQueryBounds(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	st, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	many := make([]string, MaxCredentials+1)
	for i := range many {
		many[i] = "c"
	}
	for name, err := range map[string]error{
		"no credentials": func() error { _, err := st.Series(ctx, nil, t0, t0.Add(time.Hour), time.Minute); return err }(),
		"too many":       func() error { _, err := st.Recent(ctx, many, 10); return err }(),
		"step under 1 min": func() error {
			_, err := st.Series(ctx, []string{"a"}, t0, t0.Add(time.Hour), 30*time.Second)
			return err
		}(),
		"too many steps": func() error {
			_, err := st.Series(ctx, []string{"a"}, t0, t0.Add(365*24*time.Hour), time.Minute)
			return err
		}(),
		"empty range": func() error { _, err := st.Series(ctx, []string{"a"}, t0, t0, time.Minute); return err }(),
		"limit 0":     func() error { _, err := st.Recent(ctx, []string{"a"}, 0); return err }(),
		"errors none": func() error { _, err := st.Errors(ctx, nil, t0); return err }(),
		"totals none": func() error { _, err := st.Totals(ctx, nil, t0, t0); return err }(),
	} {
		if !errors.Is(err, ErrBadQuery) {
			t.Errorf("%s: %v, want ErrBadQuery", name, err)
		}
	}
	// A credential that looks like SQL is only a value.
	if _, err := st.Recent(ctx, []string{"x') OR 1=1 --"}, 10); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderBatching(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	flushed := make(chan int, 10)
	r := newRecorder(t, db, audit.Discard{}, Options{MaxBatch: 3, FlushEvery: 20 * time.Millisecond, flushed: flushed})
	ctx := context.Background()
	for i := range 3 {
		r.Record(ctx, rest("a", t0.Add(time.Duration(i)*time.Second), 200, "read", "GET /fhir/Patient/{id}", 0))
	}
	if n := <-flushed; n != 3 {
		t.Fatalf("a full batch wrote %d events, want 3", n)
	}
	// One event alone goes after FlushEvery, without a Flush.
	r.Record(ctx, rest("a", t0, 200, "read", "GET /fhir/Patient/{id}", 0))
	if n := <-flushed; n != 1 {
		t.Fatalf("the timer's batch wrote %d events, want 1", n)
	}
	if r.Written() != 4 {
		t.Fatalf("written %d", r.Written())
	}
}

func TestRecorderDropsWhenFull(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	flushed := make(chan int) // unread: the writer blocks after its first batch
	r, err := NewRecorder(context.Background(), db, audit.Discard{}, Options{MaxBatch: 1, QueueSize: 2, flushed: flushed})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 100 {
		r.Record(ctx, rest("a", t0, 200, "read", "GET /fhir/Patient/{id}", 0)) // never blocks
	}
	if d := r.Dropped(); d < 97 {
		t.Fatalf("dropped %d of 100 with a queue of 2 and a stuck writer, want at least 97", d)
	}
	go func() {
		for range flushed {
		}
	}()
	r.Close()
	close(flushed)
	if r.Written()+r.Dropped() != 100 {
		t.Fatalf("written %d + dropped %d != 100", r.Written(), r.Dropped())
	}
	r.Record(ctx, rest("a", t0, 200, "read", "GET /fhir/Patient/{id}", 0)) // after Close: dropped, no panic
	if r.Dropped()+r.Written() != 101 {
		t.Fatalf("a record after Close was not counted")
	}
}

func TestRecorderRetention(t *testing.T) {
	dialects(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		now := t0.Add(40 * 24 * time.Hour)
		c := testclock.New(now)
		r := newRecorder(t, db, audit.Discard{}, Options{Now: c.Now, RecentPerCredential: 5, Retention: 30 * 24 * time.Hour, PruneEvery: time.Hour})
		// Old activity (40 days ago), then recent: the first flush prunes.
		r.Record(ctx, rest("a", t0, 404, "read", "GET /fhir/Patient/{id}", 0))
		r.Flush()
		if rec, _ := r.Recent(ctx, []string{"a"}, 10); len(rec) != 0 {
			t.Fatalf("activity older than the retention kept: %+v", rec)
		}
		if errs, _ := r.Errors(ctx, []string{"a"}, t0.Add(-time.Hour)); len(errs) != 0 {
			t.Fatalf("old errors kept: %+v", errs)
		}
		// Recent is bounded per credential, across batches.
		for i := range 12 {
			r.Record(ctx, rest("a", now.Add(time.Duration(i)*time.Second), 200, "read", "GET /fhir/Patient/{id}", time.Duration(i)*time.Millisecond))
			if i == 6 {
				r.Flush()
			}
		}
		r.Record(ctx, rest("b", now, 200, "read", "GET /fhir/Patient/{id}", 0))
		r.Flush()
		rec, err := r.Recent(ctx, []string{"a"}, 100)
		if err != nil || len(rec) != 5 || rec[0].LatencyMS != 11 || rec[4].LatencyMS != 7 {
			t.Fatalf("recent of a: %+v %v", rec, err)
		}
		if rec, _ := r.Recent(ctx, []string{"b"}, 100); len(rec) != 1 {
			t.Fatalf("b's recent trimmed by a's: %+v", rec)
		}
		// An hour on, what was written 31 days before the clock goes.
		c.Set(now.Add(31 * 24 * time.Hour))
		r.Record(ctx, rest("c", c.Now(), 200, "read", "GET /fhir/Patient/{id}", 0))
		r.Flush()
		if tot, _ := r.Totals(ctx, []string{"a", "b"}, now.Add(-time.Hour), now.Add(time.Hour)); tot.Requests != 0 {
			t.Fatalf("buckets past retention kept: %+v", tot)
		}
	})
}

func TestCause(t *testing.T) {
	for _, tc := range []struct {
		e    audit.Event
		want string
	}{
		{audit.Event{Kind: audit.KindREST, Status: 200}, ""},
		{audit.Event{Kind: audit.KindREST, Status: 403, Cause: "compartment"}, "compartment"},
		{audit.Event{Kind: audit.KindREST, Status: 403}, CauseForbidden},
		{audit.Event{Kind: audit.KindRateLimited, Status: 429}, "rate-limit"},
		{audit.Event{Kind: audit.KindNetworkRefused, Status: 403}, "network"},
		{audit.Event{Kind: audit.KindAuthnFailure, Status: 401}, "credential"},
		{audit.Event{Kind: audit.KindREST, Status: 401}, "credential"},
		{audit.Event{Kind: audit.KindREST, Status: 404}, CauseNotFound},
		{audit.Event{Kind: audit.KindREST, Status: 410}, CauseNotFound},
		{audit.Event{Kind: audit.KindREST, Status: 412}, CauseConflict},
		{audit.Event{Kind: audit.KindREST, Status: 415}, CauseNotSupported},
		{audit.Event{Kind: audit.KindREST, Status: 413}, CauseTooLarge},
		{audit.Event{Kind: audit.KindREST, Status: 400}, CauseInvalidRequest},
		{audit.Event{Kind: audit.KindREST, Status: 422}, CauseInvalidRequest},
		{audit.Event{Kind: audit.KindREST, Status: 503}, CauseServerError},
	} {
		if got := Cause(tc.e); got != tc.want {
			t.Errorf("Cause(%s %d %q) = %q, want %q", tc.e.Kind, tc.e.Status, tc.e.Cause, got, tc.want)
		}
	}
}
