package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// BenchmarkVerify measures VerifyWith (index check on) over a trail of
// 50,000 records, every one copied into the FHIR store:
//
//	go test -run '^$' -bench Verify -benchtime 1x ./internal/audit/
//
// Building the trail (not timed) takes about a minute per dialect;
// LAPIS_VERIFY_BENCH_N sets another size.
func BenchmarkVerify(b *testing.B) {
	n := int64(50000)
	if v, err := strconv.ParseInt(os.Getenv("LAPIS_VERIFY_BENCH_N"), 10, 64); err == nil && v > 0 {
		n = v
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			url := "sqlite:" + filepath.Join(b.TempDir(), "lapis.db")
			if dialect == "postgres" {
				url = pgtest.New(b)
			}
			ctx := context.Background()
			st, db := audit.OpenStores(b, url)
			ix := extractor(b)
			chain := uuid.NewString()
			at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
			if err := db.StartChain(ctx, chain, "bench", at); err != nil {
				b.Fatal(err)
			}
			prev := audit.Genesis
			src := audit.Source{Site: fhirBase, Instance: chain}
			rows := make([]audit.Row, 0, 1000)
			for seq := int64(1); seq <= n; seq++ {
				i := int(seq)
				ev := audit.Event{Kind: audit.KindREST, Action: "R", Interaction: "read", Outcome: audit.OutcomeSuccess, Status: 200,
					ClientID: "app", Subject: "u1", FHIRUser: "Practitioner/p1", Method: "bearer", CredentialID: fmt.Sprint("jti-", i),
					Address: "10.0.0.1", Patient: patientOf(i), Returned: 1,
					Entities: []audit.Entity{{Type: "Observation", ID: fmt.Sprintf("o%d", i), Version: "1", Role: "domain"}}}
				id := uuid.NewString()
				body := audit.Render(&ev, id, at, src)
				h := audit.HashV2(chain, seq, prev, seq-1, body)
				rows = append(rows, audit.Row{Chain: chain, Seq: seq, PrevHash: prev, Hash: h, ResourceID: id, Version: 1, Recorded: at, Body: body, Format: 2, Watermark: seq - 1})
				prev = h
				if len(rows) == cap(rows) || seq == n {
					if err := db.Append(ctx, rows); err != nil {
						b.Fatal(err)
					}
					for k := 0; k < len(rows); k += 250 {
						if err := audit.Materialize(ctx, db, st, ix, rows[k:min(k+250, len(rows))]); err != nil {
							b.Fatal(err)
						}
					}
					rows = rows[:0]
				}
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapInuse
			var peak uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			for b.Loop() {
				rep, err := audit.VerifyWith(ctx, db, st, audit.Options{Indexer: ix})
				if err != nil || !rep.OK || rep.Records != int(n) || rep.Pending != 0 {
					b.Fatalf("%+v %v", rep, err)
				}
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(peak-min(base, peak))/(1<<20), "heap-growth-MiB")
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op") // this process (SQLite included, PostgreSQL's server not)
		})
	}
}
