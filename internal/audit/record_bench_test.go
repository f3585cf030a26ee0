package audit

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// BenchmarkRecordSteps measures the per-record steps of the pipeline
// apart: rendering the AuditEvent, hashing the link, and preparing its
// FHIR store write (decode and index extraction, index extraction from
// the handed-over AuditEvent, or its index rows built directly).
func BenchmarkRecordSteps(b *testing.B) {
	_, ix := registry(b)
	ev := readEvent(1)
	src := Source{Site: base, Instance: uuid.NewString()}
	at := time.Now()
	body := Render(&ev, uuid.NewString(), at, src)
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Render(&ev, "id", at, src)
		}
	})
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HashV2(src.Instance, 12345, Genesis, 12000, body)
		}
	})
	// The writer's hashing, in its reused buffer.
	b.Run("hash-writer", func(b *testing.B) {
		var s linkScratch
		b.ReportAllocs()
		for b.Loop() {
			s.hashV2(src.Instance, 12345, Genesis, 12000, body)
		}
	})
	// prepare decodes the record; prepare-handoff is the copy of this
	// process's own records, with the AuditEvent handed over (no
	// decoding); prepare-direct the same with the index rows built from
	// the AuditEvent (directIndex).
	ae := newAuditEvent(&ev, "id", at, src)
	for _, c := range []struct {
		name   string
		ae     *auditEvent
		direct bool
	}{{"prepare", nil, false}, {"prepare-handoff", ae, false}, {"prepare-direct", ae, true}} {
		b.Run(c.name, func(b *testing.B) {
			row := Row{Chain: src.Instance, Seq: 1, ResourceID: "id", Version: 1, Recorded: at, Body: body}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := prepareWrite(ix, &row, c.ae, c.direct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMaterialize measures the copy of chain rows into the FHIR
// store, on both dialects, per batch of 100 records: through
// the store's store.Creator (putnew) and one Put per record (put); the
// copy of this process's own records with the handed-over AuditEvents,
// extracted generically (putnew-handoff) or indexed directly
// (putnew-direct); and the copy of records it was not handed, decoded
// into the record's type and indexed directly (putnew-decoded; putnew
// extracts them generically). Rendering the batch's records is not
// timed. Besides ns/op (wall time, noisy on a shared machine) it reports
// the CPU time of the process (cpu-µs/record, with the store's background
// work such as SQLite's checkpoints) and, on PostgreSQL, of the store's
// server processes (server-cpu-µs/record), over the timed part:
//
//	go test -run '^$' -bench Materialize/sqlite/putnew-direct -benchmem ./internal/audit
func BenchmarkMaterialize(b *testing.B) {
	for _, d := range []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite:" + b.TempDir() + "/l.db" }},
		{"postgres", func(b *testing.B) string { return pgtest.New(b) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			url := d.url(b)
			benchMaterialize(b, url, d.name == "postgres")
		})
	}
}

func benchMaterialize(b *testing.B, url string, pg bool) {
	e := open(b, url, func(c *Config) { c.CopyDuty = 1 })
	_, ix := registry(b)
	src := Source{Site: base, Instance: e.rec.Chain()}
	ev := readEvent(1)
	at := time.Now()
	const batch = 100
	// handoff: the copy of this process's records, which has their
	// AuditEvents; direct: their index rows built from them.
	for _, tc := range []struct {
		name            string
		st              Updater
		handoff, direct bool
	}{{"put", putOnly{e.st}, false, false}, {"putnew", e.st, false, false}, {"putnew-handoff", e.st, true, false}, {"putnew-direct", e.st, true, true},
		{"putnew-decoded", e.st, false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			rows := make([]Row, batch)
			aes := map[int64]*auditEvent{}
			var doc func(*Row) *auditEvent
			if tc.handoff {
				doc = func(r *Row) *auditEvent { return aes[r.Seq] }
			}
			var cpu cpuMeter
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range rows {
					id := recordID()
					ae := newAuditEvent(&ev, id, at, src)
					aes[int64(i)] = ae
					rows[i] = Row{Chain: "bench", Seq: int64(i), ResourceID: id, Version: 1, Recorded: at, Body: ae.appendJSON(nil)}
				}
				if pg {
					// The pools' connections, as they are now.
					cpu.server = e.serverPIDs(b)
				}
				b.StartTimer()
				cpu.start()
				if err := materialize(context.Background(), e.db, tc.st, ix, rows, doc, tc.direct); err != nil {
					b.Fatal(err)
				}
				cpu.stop()
			}
			cpu.report(b, batch)
		})
	}
}

// putOnly hides the store transactions' optional interfaces (one Put per
// record).
type putOnly struct{ Updater }

type putOnlyTx struct{ store.Tx }

func (p putOnly) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return p.Updater.Update(ctx, func(tx store.Tx) error { return fn(putOnlyTx{tx}) })
}
