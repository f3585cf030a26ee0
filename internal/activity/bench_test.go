package activity

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
)

// benchDialects runs fn on a fresh SQLite file and a fresh PostgreSQL
// database.
func benchDialects(b *testing.B, fn func(b *testing.B, db *database.DB)) { dbtest.Both(b, fn) }

// populate records n requests spread over clients credentials and the
// day before now through a Recorder (the write path), a tenth of them
// refused; heavy adds to "app-0" one request a minute, of four statuses
// in turn, for heavy days.
func populate(b *testing.B, db *database.DB, now time.Time, clients, n, heavy int) *Recorder {
	b.Helper()
	r, err := NewRecorder(context.Background(), db, audit.Discard{}, Options{Now: func() time.Time { return now }, MaxBatch: 2000, QueueSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	ctx := context.Background()
	statuses := []int{200, 200, 200, 200, 201, 200, 304, 404, 403, 429}
	causes := map[int]string{403: "scope", 429: "rate-limit"}
	for i := range n {
		at := now.Add(-time.Duration(i) * 24 * time.Hour / time.Duration(n))
		st := statuses[i%len(statuses)]
		e := rest(fmt.Sprintf("app-%d", i%clients), at, st, "search-type", "GET /fhir/Observation?…", time.Duration(i%50)*time.Millisecond)
		e.Cause = causes[st]
		r.Record(ctx, e)
	}
	for m := range heavy * 24 * 60 {
		r.Record(ctx, rest("app-0", now.Add(-time.Duration(m)*time.Minute), statuses[m%4+6], "read", "GET /fhir/Patient/{id}", time.Millisecond))
	}
	r.Flush()
	if r.Dropped() != 0 {
		b.Fatalf("%d events dropped while populating", r.Dropped())
	}
	return r
}

// BenchmarkPortalQueries: 100 clients and 10,000 requests of activity
// (the measure); one app's page asks for its series (a day in
// 5-minute steps), recent requests, errors and totals, and draws both
// charts. "heavy" adds a week of one request a minute to that app.
func BenchmarkPortalQueries(b *testing.B) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, heavy := range []int{0, 7} {
		b.Run(fmt.Sprintf("heavy=%dd", heavy), func(b *testing.B) {
			benchDialects(b, func(b *testing.B, db *database.DB) {
				r := populate(b, db, now, 100, 10_000, heavy)
				ctx := context.Background()
				creds := []string{"app-0"}
				from := now.Add(-24 * time.Hour)
				b.Run("Series", func(b *testing.B) {
					for b.Loop() {
						if _, err := r.Series(ctx, creds, from, now, 5*time.Minute); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run("Recent", func(b *testing.B) {
					for b.Loop() {
						if rec, err := r.Recent(ctx, creds, 50); err != nil || len(rec) == 0 {
							b.Fatal(err)
						}
					}
				})
				b.Run("Errors", func(b *testing.B) {
					for b.Loop() {
						if _, err := r.Errors(ctx, creds, from); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run("Totals", func(b *testing.B) {
					for b.Loop() {
						if _, err := r.Totals(ctx, creds, from, now); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run("Page", func(b *testing.B) {
					for b.Loop() {
						pts, err := r.Series(ctx, creds, from, now, 5*time.Minute)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := r.Recent(ctx, creds, 50); err != nil {
							b.Fatal(err)
						}
						if _, err := r.Errors(ctx, creds, from); err != nil {
							b.Fatal(err)
						}
						tot, err := r.Totals(ctx, creds, from, now)
						if err != nil {
							b.Fatal(err)
						}
						_ = Chart(pts, ChartOptions{})
						_ = StatusChart(tot, ChartOptions{})
						_ = Table(pts, "Requests", 50)
					}
				})
			})
		})
	}
}

// BenchmarkRecorderWrite is the write path: events per second through a
// Recorder into the tables (100 clients).
func BenchmarkRecorderWrite(b *testing.B) {
	benchDialects(b, func(b *testing.B, db *database.DB) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		r, err := NewRecorder(context.Background(), db, audit.Discard{}, Options{Now: func() time.Time { return now }, QueueSize: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		ctx := context.Background()
		i := 0
		for b.Loop() {
			r.Record(ctx, rest(fmt.Sprintf("app-%d", i%100), now.Add(time.Duration(i)*time.Millisecond), 200, "read", "GET /fhir/Patient/{id}", time.Millisecond))
			i++
			if i%1000 == 0 {
				r.Flush() // the writes count, not only the enqueueing
			}
		}
		r.Flush()
		if r.Dropped() != 0 {
			b.Fatalf("%d dropped", r.Dropped())
		}
	})
}
