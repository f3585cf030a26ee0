package audit_test

// Tampering with the copies of the audit trail that the server serves
// (current rows, history rows, search index rows, last_updated) and with
// the copy bookkeeping, on both dialects, through Verify and through
// `lapis audit verify`.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/cli"
	"github.com/lapis-health/lapis/internal/fhir/definitions"
	"github.com/lapis-health/lapis/internal/fhir/extract"
	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

const fhirBase = "http://lapis.test/fhir"

var (
	exOnce sync.Once
	exr    *extract.Extractor
)

func extractor(t testing.TB) *extract.Extractor {
	t.Helper()
	exOnce.Do(func() {
		reg, err := definitions.Load()
		if err != nil {
			panic(err)
		}
		if exr, err = extract.New(reg, fhirBase); err != nil {
			panic(err)
		}
	})
	return exr
}

func bothDialects(t *testing.T, fn func(t *testing.T, url, dir string)) {
	// Each dialect has its own database; a trail's records are committed
	// one at a time, so the two mostly wait on their commits, side by side.
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fn(t, "sqlite:"+filepath.Join(dir, "lapis.db"), dir)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.New(t), t.TempDir())
	})
}

// trail is an audit trail written by a recorder that has stopped (every
// record copied into the FHIR store).
type trail struct {
	url, dir string
	st       store.Store
	db       *audit.DB
	chain    string
	rows     []audit.Row // by seq
	stream   []byte
}

// patientOf is the patient of the i-th event (0-based) of a trail.
func patientOf(i int) string { return fmt.Sprintf("pat%d", i%4) }

func newTrail(t testing.TB, url, dir string, n int, now func() time.Time) *trail {
	t.Helper()
	ctx := context.Background()
	st, db := audit.OpenStores(t, url)
	var stream bytes.Buffer
	rec, err := audit.Start(ctx, audit.Config{DB: db, Store: st, Indexer: extractor(t), Site: fhirBase, Stream: &stream, Now: now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AnchorEvery: -1, CopyDuty: 1, DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ev := audit.Event{Kind: audit.KindREST, Action: "R", Interaction: "read", Outcome: audit.OutcomeSuccess, Status: 200,
			ClientID: "app", Subject: "u1", FHIRUser: "Practitioner/p1", Method: "bearer", CredentialID: fmt.Sprint("jti-", i),
			Address: "10.0.0.1", Patient: patientOf(i), Returned: 1,
			Entities: []audit.Entity{{Type: "Observation", ID: fmt.Sprintf("o%d", i), Version: "1", Role: "domain"}}}
		if err := rec.Commit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	rec.Close() // drains the copy
	tr := &trail{url: url, dir: dir, st: st, db: db, chain: rec.Chain(), stream: stream.Bytes()}
	for after := int64(0); ; {
		rows, err := db.Page(ctx, tr.chain, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		tr.rows = append(tr.rows, rows...)
		after = rows[len(rows)-1].Seq
	}
	if len(tr.rows) != n {
		t.Fatalf("%d records in the chain, want %d", len(tr.rows), n)
	}
	return tr
}

// row returns the record at seq.
func (tr *trail) row(seq int64) audit.Row { return tr.rows[seq-1] }

// count runs a COUNT query (with ? placeholders) directly against the
// database.
func (tr *trail) count(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	if tr.db.Postgres() {
		n := 0
		q = regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return fmt.Sprintf("$%d", n) })
	}
	var c int64
	if err := tr.db.SQL().QueryRow(q, args...).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// exec runs SQL (with ? placeholders) directly against the database, as an
// attacker with write access would, and returns the rows affected.
func (tr *trail) exec(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	if tr.db.Postgres() {
		n := 0
		q = regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return fmt.Sprintf("$%d", n) })
	}
	res, err := tr.db.SQL().Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	n, _ := res.RowsAffected()
	return n
}

// deleteAuditEvents removes every trace of the AuditEvents of the records
// seqs from the FHIR store: index rows, current rows, history rows.
func (tr *trail) deleteAuditEvents(t testing.TB, seqs []int64) {
	t.Helper()
	var ids []string
	for _, s := range seqs {
		ids = append(ids, "'"+tr.row(s).ResourceID+"'") // uuids
	}
	in := "(" + strings.Join(ids, ", ") + ")"
	for _, table := range []string{"idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri"} {
		tr.exec(t, "DELETE FROM "+table+" WHERE rid IN (SELECT rid FROM resources WHERE type = 'AuditEvent' AND id IN "+in+")")
	}
	if n := tr.exec(t, "DELETE FROM resources WHERE type = 'AuditEvent' AND id IN "+in); n != int64(len(seqs)) {
		t.Fatalf("%d AuditEvents deleted", n)
	}
	if n := tr.exec(t, "DELETE FROM history WHERE type = 'AuditEvent' AND id IN "+in); n != int64(len(seqs)) {
		t.Fatalf("%d history rows deleted", n)
	}
}

// findings is a finding reduced to what the tests compare.
type key struct {
	Kind, Chain string
	Seq         int64
	Resource    string
}

func keys(rep *audit.Report) []key {
	var out []key
	for _, f := range rep.Findings {
		out = append(out, key{f.Kind, f.Chain, f.Seq, f.Resource})
	}
	return out
}

// verify runs the verification twice, through VerifyWith and through
// `lapis audit verify --json` (with args), checks that both report the
// same findings and that the command exits 1 exactly when there are
// findings, and returns the report. A repair (o.RepairIndex, with
// --repair-index in args) runs through the command only.
func (tr *trail) verify(t testing.TB, o audit.Options, args ...string) *audit.Report {
	t.Helper()
	o.Indexer = extractor(t)
	rep := &audit.Report{}
	if !o.RepairIndex {
		var err error
		if rep, err = audit.VerifyWith(context.Background(), tr.db, tr.st, o); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := tr.cli(t, append([]string{"audit", "verify", "--json"}, args...)...)
	var crep audit.Report
	if err := json.Unmarshal([]byte(out), &crep); err != nil {
		t.Fatalf("lapis audit verify: exit %d, %v: %s %s", code, err, out, errOut)
	}
	if want := map[bool]int{true: 0, false: 1}[crep.OK]; code != want || !o.RepairIndex && crep.OK != rep.OK {
		t.Fatalf("lapis audit verify: exit %d, ok %v (library ok %v): %s", code, crep.OK, rep.OK, errOut)
	}
	if !o.RepairIndex && !slices.Equal(keys(rep), keys(&crep)) {
		t.Fatalf("lapis audit verify reports\n%+v\nVerifyWith reports\n%+v", crep.Findings, rep.Findings)
	}
	if o.RepairIndex {
		return &crep
	}
	return rep
}

func (tr *trail) cli(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--database", tr.url, "--data-dir", tr.dir, "--base-url", strings.TrimSuffix(fhirBase, "/fhir"))
	code := cli.Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// searchPatient returns the ids of the AuditEvents a search by patient
// finds.
func (tr *trail) searchPatient(t testing.TB, patient string) []string {
	t.Helper()
	res, err := tr.st.Search(context.Background(), &store.Query{Type: "AuditEvent", Count: 1000, Total: store.TotalNone,
		Where: []store.Clause{{Any: []store.Predicate{{Param: "patient", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: patient}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range res.Matches {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// want lists findings on the trail's chain.
func (tr *trail) want(kind string, seqs ...int64) []key {
	var out []key
	for _, s := range seqs {
		out = append(out, key{kind, tr.chain, s, "AuditEvent/" + tr.row(s).ResourceID})
	}
	return out
}

func sameFindings(t testing.TB, rep *audit.Report, want []key) {
	t.Helper()
	got := keys(rep)
	if rep.OK || !slices.Equal(got, want) {
		t.Fatalf("findings\n%+v\nwant\n%+v", rep.Findings, want)
	}
}

// Finding 6.1: deleting the index rows of the AuditEvents about one patient
// (searches then find none) is reported as index, per AuditEvent; so are an
// extra index row and a wrong index mask; --repair-index rebuilds them
// from the chain.
func TestTamperIndexRows(t *testing.T) {
	t.Parallel()
	bothDialects(t, func(t *testing.T, url, dir string) {
		tr := newTrail(t, url, dir, 16, nil)
		if rep := tr.verify(t, audit.Options{}); !rep.OK || rep.Records != 16 || rep.Pending != 0 {
			t.Fatalf("before tampering: %+v", rep)
		}
		var about []int64 // seqs of pat2's AuditEvents
		var ids []string
		for i := range tr.rows {
			if patientOf(i) == "pat2" {
				about = append(about, tr.rows[i].Seq)
				ids = append(ids, tr.rows[i].ResourceID)
			}
		}
		slices.Sort(ids)
		if got := tr.searchPatient(t, "pat2"); !slices.Equal(got, ids) {
			t.Fatalf("search before tampering: %v, want %v", got, ids)
		}
		if n := tr.exec(t, "DELETE FROM idx_reference WHERE type = 'AuditEvent' AND target_type = 'Patient' AND target_id = 'pat2'"); n < int64(len(ids)) {
			t.Fatalf("%d index rows deleted", n)
		}
		if got := tr.searchPatient(t, "pat2"); len(got) != 0 {
			t.Fatalf("search after deleting the index rows: %v", got)
		}
		// An extra row (seq 1 now also matches outcome=8) and a zeroed mask
		// (seq 2).
		tr.exec(t, "INSERT INTO idx_token (rid, type, param, grp, system, code, text) SELECT rid, 'AuditEvent', 'outcome', 0, 'http://hl7.org/fhir/audit-event-outcome', '8', '' FROM resources WHERE type = 'AuditEvent' AND id = ?", tr.row(1).ResourceID)
		tr.exec(t, "UPDATE resources SET idx_mask = 0 WHERE type = 'AuditEvent' AND id = ?", tr.row(2).ResourceID)

		want := tr.want(audit.FindingIndex, append([]int64{1, 2}, about...)...)
		slices.SortFunc(want, func(a, b key) int { return int(a.Seq - b.Seq) })
		rep := tr.verify(t, audit.Options{})
		sameFindings(t, rep, want)
		for _, f := range rep.Findings {
			if f.Seq == 1 && !strings.Contains(f.Detail, "1 extra (outcome)") || f.Seq == 2 && !strings.Contains(f.Detail, "index mask 0") ||
				f.Seq > 2 && !strings.Contains(f.Detail, "missing (entity, patient)") {
				t.Errorf("detail of %+v", f)
			}
		}

		// Repair: the findings are still reported, the index is rebuilt.
		rep = tr.verify(t, audit.Options{RepairIndex: true}, "--repair-index")
		if rep.OK || len(rep.Findings) != len(want) || rep.Repaired != len(want) {
			t.Fatalf("repair run: %+v", rep)
		}
		if got := tr.searchPatient(t, "pat2"); !slices.Equal(got, ids) {
			t.Fatalf("search after the repair: %v, want %v", got, ids)
		}
		if rep := tr.verify(t, audit.Options{}); !rep.OK || rep.Repaired != 0 {
			t.Fatalf("after the repair: %+v", rep)
		}
	})
}

// The copy stores an AuditEvent's index without the rows no search tells
// apart from others (two equal entity-type rows here); records copied
// before it did, with every row the extractor makes, verify as well, and
// a row missing is still reported.
func TestVerifyIndexCompactedOrFull(t *testing.T) {
	t.Parallel()
	bothDialects(t, func(t *testing.T, url, dir string) {
		tr := newTrail(t, url, dir, 4, nil)
		ctx := context.Background()
		full := func(seq int64) store.Index {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(tr.row(seq).Body))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				t.Fatal(err)
			}
			ix, err := extractor(t).Extract(m)
			if err != nil {
				t.Fatal(err)
			}
			return ix
		}
		stored := func(seq int64) int64 {
			return tr.count(t, "SELECT COUNT(*) FROM idx_token WHERE type = 'AuditEvent' AND rid = (SELECT rid FROM resources WHERE type = 'AuditEvent' AND id = ?)", tr.row(seq).ResourceID)
		}
		if ix := full(1); stored(1) != int64(len(ix.Tokens))-1 {
			t.Fatalf("%d token rows stored, want one fewer than the %d extracted", stored(1), len(ix.Tokens))
		}
		// Seq 2 as an earlier copy stored it.
		err := tr.st.Update(ctx, func(tx store.Tx) error {
			ix := full(2)
			return tx.(store.IndexWriter).PutIndex(ctx, "AuditEvent", tr.row(2).ResourceID, &ix)
		})
		if err != nil {
			t.Fatal(err)
		}
		if ix := full(2); stored(2) != int64(len(ix.Tokens)) {
			t.Fatalf("%d token rows stored, want the %d extracted", stored(2), len(ix.Tokens))
		}
		if rep := tr.verify(t, audit.Options{}); !rep.OK || rep.Records != 4 {
			t.Fatalf("compacted and full index rows: %+v", rep)
		}
		// The other entity-type 2 row of seq 1 goes: no search finds it as
		// a System Object any more.
		tr.exec(t, "DELETE FROM idx_token WHERE type = 'AuditEvent' AND param = 'entity-type' AND code = '2' AND rid = (SELECT rid FROM resources WHERE type = 'AuditEvent' AND id = ?)", tr.row(1).ResourceID)
		sameFindings(t, tr.verify(t, audit.Options{}), tr.want(audit.FindingIndex, 1))
	})
}

// Finding 6.2: rewriting an AuditEvent's body in history (what vread and
// _history serve) is reported as modified.
func TestTamperHistoryBody(t *testing.T) {
	t.Parallel()
	bothDialects(t, func(t *testing.T, url, dir string) {
		tr := newTrail(t, url, dir, 6, nil)
		r := tr.row(4)
		forged := bytes.Replace(r.Body, []byte(`"outcome":"0"`), []byte(`"outcome":"8"`), 1)
		if tr.exec(t, "UPDATE history SET body = ? WHERE type = 'AuditEvent' AND id = ?", forged, r.ResourceID) != 1 {
			t.Fatal("history row not rewritten")
		}
		if v, err := tr.st.VRead(context.Background(), "AuditEvent", r.ResourceID, 1); err != nil || !bytes.Equal(v.Body, forged) {
			t.Fatalf("vread does not serve the forgery: %v", err)
		}
		rep := tr.verify(t, audit.Options{})
		sameFindings(t, rep, tr.want(audit.FindingModified, 4))
		if d := rep.Findings[0].Detail; !strings.Contains(d, "history version 1's bytes differ") || strings.Contains(d, "current") {
			t.Errorf("detail: %s", d)
		}
		// A second version in history (nothing ever updates an AuditEvent).
		tr.exec(t, "INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body) SELECT rid, type, id, 2, last_updated, deleted, 'PUT', body FROM resources WHERE type = 'AuditEvent' AND id = ?", tr.row(5).ResourceID)
		rep = tr.verify(t, audit.Options{})
		sameFindings(t, rep, append(tr.want(audit.FindingModified, 4), tr.want(audit.FindingModified, 5)...))
		if d := rep.Findings[1].Detail; !strings.Contains(d, "1 other version") {
			t.Errorf("detail: %s", d)
		}
	})
}

// Finding 6.3: zeroing last_updated (of the current row: Last-Modified,
// _lastUpdated searches; of the history row: _history, _since) is
// reported as modified.
func TestTamperLastUpdated(t *testing.T) {
	t.Parallel()
	bothDialects(t, func(t *testing.T, url, dir string) {
		tr := newTrail(t, url, dir, 6, nil)
		tr.exec(t, "UPDATE resources SET last_updated = 0 WHERE type = 'AuditEvent' AND id = ?", tr.row(2).ResourceID)
		tr.exec(t, "UPDATE history SET last_updated = 0 WHERE type = 'AuditEvent' AND id = ?", tr.row(5).ResourceID)
		rep := tr.verify(t, audit.Options{})
		sameFindings(t, rep, tr.want(audit.FindingModified, 2, 5))
		if d := rep.Findings[0].Detail; !strings.Contains(d, "current version's last_updated is 1970-01-01T00:00:00.000Z") {
			t.Errorf("detail: %s", d)
		}
		if d := rep.Findings[1].Detail; !strings.Contains(d, "history version 1's last_updated is 1970-01-01T00:00:00.000Z") {
			t.Errorf("detail: %s", d)
		}
	})
}

// Finding 6.4: resetting copied_seq and deleting AuditEvents reports them
// deleted, not pending: in the middle of the chain (later records are
// stored, and the records' hashed watermarks say how far the copy got),
// at its tail with an anchor, and at its tail without one once they are
// older than the pending bound.
func TestTamperCopiedSeqReset(t *testing.T) {
	t.Parallel()
	const n, gone = 200, 96
	seqs := func(from int64) []int64 {
		var s []int64
		for i := from; i < from+gone; i++ {
			s = append(s, i)
		}
		return s
	}
	// rollback drops the chain-level finding that copied_seq went back (it
	// is reported when a record's hashed watermark or the anchor is ahead
	// of it) and returns the others.
	rollback := func(t *testing.T, tr *trail, rep *audit.Report, must bool) *audit.Report {
		t.Helper()
		out := *rep
		out.Findings = nil
		found := false
		for _, f := range rep.Findings {
			if f.Kind == audit.FindingModified && f.Resource == "" && strings.Contains(f.Detail, "rolled back") && f.Chain == tr.chain {
				found = true
				continue
			}
			out.Findings = append(out.Findings, f)
		}
		if must && !found {
			t.Errorf("copied_seq rollback not reported: %+v", rep.Findings)
		}
		return &out
	}
	run := func(name string, fn func(t *testing.T, url, dir string)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bothDialects(t, fn)
		})
	}
	{
		run("middle", func(t *testing.T, url, dir string) {
			tr := newTrail(t, url, dir, n, nil)
			tr.exec(t, "UPDATE audit_chain SET copied_seq = 0 WHERE chain_id = ?", tr.chain)
			tr.deleteAuditEvents(t, seqs(50))
			rep := rollback(t, tr, tr.verify(t, audit.Options{}), false)
			sameFindings(t, rep, tr.want(audit.FindingDeleted, seqs(50)...))
			if rep.Pending != 0 {
				t.Fatalf("%d pending", rep.Pending)
			}
		})
		run("tail-anchored", func(t *testing.T, url, dir string) {
			tr := newTrail(t, url, dir, n, nil)
			anchors := filepath.Join(t.TempDir(), "stream.jsonl")
			if err := os.WriteFile(anchors, tr.stream, 0o600); err != nil {
				t.Fatal(err)
			}
			a, err := audit.ReadAnchors(bytes.NewReader(tr.stream))
			if err != nil || a[tr.chain].Copied != n {
				t.Fatalf("anchors %+v %v", a, err)
			}
			tr.exec(t, "UPDATE audit_chain SET copied_seq = 0 WHERE chain_id = ?", tr.chain)
			tr.deleteAuditEvents(t, seqs(n-gone+1))
			rep := rollback(t, tr, tr.verify(t, audit.Options{Anchors: a}, "--anchors", anchors), true)
			sameFindings(t, rep, tr.want(audit.FindingDeleted, seqs(n-gone+1)...))
			if rep.Pending != 0 {
				t.Fatalf("%d pending", rep.Pending)
			}
		})
		run("tail-heads", func(t *testing.T, url, dir string) {
			tr := newTrail(t, url, dir, n, nil)
			code, heads, errOut := tr.cli(t, "audit", "heads")
			file := filepath.Join(t.TempDir(), "heads.jsonl")
			if code != 0 || os.WriteFile(file, []byte(heads), 0o600) != nil {
				t.Fatalf("audit heads: %d %s", code, errOut)
			}
			a, err := audit.ReadAnchors(strings.NewReader(heads))
			if err != nil || a[tr.chain].Copied != n {
				t.Fatalf("heads %s: %+v %v", heads, a, err)
			}
			tr.exec(t, "UPDATE audit_chain SET copied_seq = 0 WHERE chain_id = ?", tr.chain)
			tr.deleteAuditEvents(t, seqs(n-gone+1))
			rep := rollback(t, tr, tr.verify(t, audit.Options{Anchors: a}, "--anchors", file), true)
			sameFindings(t, rep, tr.want(audit.FindingDeleted, seqs(n-gone+1)...))
		})
		run("tail-old", func(t *testing.T, url, dir string) {
			// Recorded two hours ago; no anchor. Each deleted record is
			// reported deleted (up to the last record's hashed watermark)
			// or within the stale range (after it), none is pending.
			tr := newTrail(t, url, dir, n, func() time.Time { return time.Now().Add(-2 * time.Hour) })
			tr.exec(t, "UPDATE audit_chain SET copied_seq = 0 WHERE chain_id = ?", tr.chain)
			tr.deleteAuditEvents(t, seqs(n-gone+1))
			rep := rollback(t, tr, tr.verify(t, audit.Options{}), false)
			if rep.OK || rep.Pending != 0 {
				t.Fatalf("%+v", rep)
			}
			covered := map[int64]bool{}
			for _, f := range rep.Findings {
				switch {
				case f.Kind == audit.FindingDeleted && f.Resource == "AuditEvent/"+tr.row(f.Seq).ResourceID:
					covered[f.Seq] = true
				case f.Kind == audit.FindingStale && f.To == n:
					for s := f.Seq; s <= f.To; s++ {
						covered[s] = true
					}
				case f.Kind == audit.FindingStale && f.To == 0 && f.Seq == n && f.Resource == "AuditEvent/"+tr.row(n).ResourceID:
					covered[n] = true
				default:
					t.Errorf("unexpected finding %+v", f)
				}
			}
			if len(covered) != gone || !covered[n-gone+1] || !covered[n] {
				t.Fatalf("findings cover %d of the %d deleted records: %+v", len(covered), gone, rep.Findings)
			}
			t.Logf("%d deleted (hashed watermark), %d stale", len(rep.Findings)-1, gone-len(rep.Findings)+1)
			// With no bound they are pending, as before (and the command
			// passes unless the watermark proves deletions).
			rep = rollback(t, tr, tr.verify(t, audit.Options{MaxPendingAge: -1}, "--max-pending-age", "0"), false)
			for _, f := range rep.Findings {
				if f.Kind != audit.FindingDeleted {
					t.Errorf("unexpected finding %+v", f)
				}
			}
			if rep.Pending+len(rep.Findings) != gone {
				t.Fatalf("%d pending, %d deleted", rep.Pending, len(rep.Findings))
			}
		})
	}
}

// A live writer: records written and copied while verify runs are neither
// findings nor lost.
func TestVerifyWhileWriting(t *testing.T) {
	bothDialects(t, func(t *testing.T, url, dir string) {
		tr := newTrail(t, url, dir, 10, nil)
		rec, err := audit.Start(context.Background(), audit.Config{DB: tr.db, Store: tr.st, Indexer: extractor(t), Site: fhirBase,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AnchorEvery: -1, CopyDuty: 1})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec.Commit(context.Background(), audit.Event{Kind: audit.KindREST, Action: "R", Interaction: "read", Patient: patientOf(i)})
			}
		}()
		for i := 0; i < 5; i++ {
			rep, err := audit.VerifyWith(context.Background(), tr.db, tr.st, audit.Options{Indexer: extractor(t)})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK {
				t.Fatalf("verify while writing: %+v", rep.Findings)
			}
		}
		close(stop)
		<-done
		rec.Close()
		if rep, err := audit.VerifyWith(context.Background(), tr.db, tr.st, audit.Options{Indexer: extractor(t)}); err != nil || !rep.OK || rep.Pending != 0 {
			t.Fatalf("after: %+v %v", rep, err)
		}
	})
}
