package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/parallel"
	"github.com/lapis-health/lapis/internal/store"
)

// Kinds of verification findings.
const (
	FindingModified  = "modified"  // a record's bytes (chain copy or a stored copy of its AuditEvent) or the bookkeeping around them changed
	FindingDeleted   = "deleted"   // a record (chain row, or a stored copy of its AuditEvent) is missing
	FindingReordered = "reordered" // a record sits at another position than it was written at
	FindingBroken    = "broken"    // a record does not link to its predecessor (rewritten chain)
	FindingInserted  = "inserted"  // an AuditEvent resource that no chain contains
	FindingTruncated = "truncated" // a chain ends before an externally anchored head
	FindingIndex     = "index"     // an AuditEvent's search index rows differ from those of its chained record
	FindingStale     = "stale"     // records long not in the FHIR store, with nothing showing they ever were
)

// Finding is one problem verify found.
type Finding struct {
	Kind     string `json:"kind"`
	Chain    string `json:"chain,omitempty"`
	Seq      int64  `json:"seq,omitempty"`
	To       int64  `json:"to,omitempty"` // last seq, when the finding is about a range of records
	Resource string `json:"resource,omitempty"`
	Detail   string `json:"detail"`
}

// Report is the result of Verify.
type Report struct {
	OK      bool `json:"ok"`
	Chains  int  `json:"chains"`
	Records int  `json:"records"`
	// Pending counts the records not (yet) stored as AuditEvent resources
	// that may legitimately be so: recorded less than MaxPendingAge ago and
	// after everything showing how far the copy had got.
	Pending int `json:"pending"`
	// Repaired counts the AuditEvents whose index rows were rebuilt from
	// the chain (Options.RepairIndex).
	Repaired int       `json:"repaired,omitempty"`
	Findings []Finding `json:"findings"`
}

// Anchor is an externally kept chain head (from the audit stream, the log
// line "audit chain head" or lapis audit heads).
type Anchor struct {
	Seq  int64
	Hash string
	// Copied is how far the chain's copy into the FHIR store had got when
	// the anchor was taken (0 when the anchor does not say).
	Copied int64
}

// Resources is the FHIR store as verify uses it; store.Store implements
// it. Verify also requires store.Inspector (the SQLite and PostgreSQL
// stores implement it) and, to repair index rows, store.IndexWriter
// transactions.
type Resources interface {
	Updater
}

// DefaultMaxPendingAge is Options.MaxPendingAge when zero.
const DefaultMaxPendingAge = time.Hour

// Options configures VerifyWith.
type Options struct {
	// Anchors are externally kept chain heads: a chain shorter than its
	// anchor is truncated, and every AuditEvent up to the anchor's copy
	// watermark must exist.
	Anchors map[string]Anchor
	// Indexer extracts the search index rows each AuditEvent must have from
	// its chained bytes (the recorder's extraction); nil skips the index
	// check.
	Indexer Indexer
	// MaxPendingAge bounds how long a record may wait for its copy into the
	// FHIR store: an older record that is not there, with nothing showing
	// it was copied, is reported as stale instead of counted as pending.
	// Zero means DefaultMaxPendingAge; negative, no bound.
	MaxPendingAge time.Duration
	// RepairIndex rebuilds, from the chained bytes, the index rows of every
	// AuditEvent reported with finding index (the finding stays: it is
	// evidence).
	RepairIndex bool
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Verify is VerifyWith without the index check and with the default
// pending bound.
func Verify(ctx context.Context, db *DB, st Resources, anchors map[string]Anchor) (*Report, error) {
	return VerifyWith(ctx, db, st, Options{Anchors: anchors})
}

// VerifyWith walks every chain in seq order, a page at a time: each
// record's hash and its link to its predecessor, gaps in the sequence, the
// chain row's columns against its hashed bytes, and every copy of its
// AuditEvent the server serves — the current row (read, search), every
// history row (vread, _history), their last_updated, version and method,
// and the search index rows (against those extracted from the chained
// bytes). A record with no copy in the FHIR store is deleted when anything
// shows it was copied (the copy bookkeeping, the hashed watermark of a
// later record, a later record's copy, an anchor), stale when it is older
// than MaxPendingAge, and pending otherwise. Then it lists the AuditEvents
// of the FHIR store that no chain contains, and checks the anchors.
// Memory: one page of records, plus 16 bytes per record for the
// inserted check and an entry per record not in the FHIR store.
func VerifyWith(ctx context.Context, db *DB, st Resources, o Options) (*Report, error) {
	ins, ok := st.(store.Inspector)
	if !ok {
		return nil, errors.New("audit: verify: the FHIR store cannot be inspected")
	}
	if o.MaxPendingAge == 0 {
		o.MaxPendingAge = DefaultMaxPendingAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v := &verifier{db: db, st: st, ins: ins, o: o, rep: &Report{Findings: []Finding{}}, last: map[string]int64{}}
	chains, err := db.Chains(ctx)
	if err != nil {
		return nil, err
	}
	v.rep.Chains = len(chains)
	for _, ch := range chains {
		if err := v.chain(ctx, ch); err != nil {
			return nil, err
		}
	}
	for ch, a := range o.Anchors {
		if !slices.Contains(chains, ch) && a.Seq > 0 {
			v.rep.add(Finding{Kind: FindingTruncated, Chain: ch, Seq: 1, Detail: fmt.Sprintf("chain missing entirely; anchored head was seq %d", a.Seq)})
		}
	}
	if err := v.inserted(ctx); err != nil {
		return nil, err
	}
	v.rep.OK = len(v.rep.Findings) == 0
	return v.rep, nil
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

// verifyPage is the number of records verify reads and checks at a time.
const verifyPage = 500

type verifier struct {
	db  *DB
	st  Resources
	ins store.Inspector
	o   Options
	rep *Report
	// known holds a 16-byte digest of the id of every chained AuditEvent
	// (sorted before the inserted check); late holds those of records
	// appended while verify ran.
	known []idKey
	late  map[idKey]bool
	// last is the last seq walked per chain.
	last map[string]int64
}

type idKey [16]byte

func keyOf(id string) idKey {
	s := sha256.Sum256([]byte(id))
	return idKey(s[:16])
}

// record is what verify derives from a chain row's hashed bytes.
type record struct {
	row      *Row
	id       string // AuditEvent id (from the hashed bytes when readable)
	version  int64
	recorded time.Time // meta.lastUpdated = recorded: the last_updated the server must serve
	doc      map[string]any
	want     store.Index // the index rows extracted from doc (with Options.Indexer)
	wantErr  error
}

// absent is a record none of whose copies is in the FHIR store.
type absent struct {
	seq      int64
	id       string
	recorded time.Time
}

func (v *verifier) chain(ctx context.Context, chain string) error {
	var fs []Finding
	add := func(f Finding) { f.Chain = chain; fs = append(fs, f) }
	expected := int64(1)
	prevHash := Genesis
	prevFlagged := false
	var last, wm, wmSeq, high int64
	var headHash string
	var missing []absent
	a, anchored := v.o.Anchors[chain]
	for after := int64(0); ; {
		rows, err := v.db.Page(ctx, chain, after, verifyPage)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		// Decoding and index extraction, the costly part, on every core.
		recs := make([]record, len(rows))
		parallel.For(len(rows), func(i int) {
			recs[i] = parseRecord(&rows[i])
			if v.o.Indexer != nil && recs[i].doc != nil {
				recs[i].want, recs[i].wantErr = v.o.Indexer.Extract(recs[i].doc)
			}
		})
		ids := make([]string, 0, len(rows))
		for i := range rows {
			row := &rows[i]
			v.rep.Records++
			res := "AuditEvent/" + row.ResourceID
			gap := false
			if row.Seq > expected {
				gap = true
				detail := fmt.Sprintf("record seq %d missing", expected)
				var to int64
				if row.Seq-expected > 1 {
					detail = fmt.Sprintf("records seq %d to %d missing", expected, row.Seq-1)
					to = row.Seq - 1
				}
				add(Finding{Kind: FindingDeleted, Seq: expected, To: to, Detail: detail})
			}
			flagged := false
			if row.LinkHash(row.Seq) != row.Hash {
				flagged = true
				if s, ok := belongsAt(row); ok {
					add(Finding{Kind: FindingReordered, Seq: row.Seq, Resource: res, Detail: "record written at seq " + strconv.FormatInt(s, 10) + " is stored at seq " + strconv.FormatInt(row.Seq, 10)})
				} else {
					add(Finding{Kind: FindingModified, Seq: row.Seq, Resource: res, Detail: "record bytes do not match their hash"})
				}
			} else if row.PrevHash != prevHash && !gap && !prevFlagged {
				flagged = true
				add(Finding{Kind: FindingBroken, Seq: row.Seq, Resource: res, Detail: "record does not link to the record before it (the chain was rewritten from here, or the previous record modified)"})
			}
			// A watermark counts only under a hash that holds.
			if !flagged && row.Format >= 2 && min(row.Watermark, row.Seq-1) > wm {
				wm, wmSeq = min(row.Watermark, row.Seq-1), row.Seq
			}
			rec := &recs[i]
			if d := rec.columnsDiffer(); d != "" {
				add(Finding{Kind: FindingModified, Seq: row.Seq, Resource: "AuditEvent/" + rec.id, Detail: d})
			}
			ids = append(ids, rec.id)
			v.known = append(v.known, keyOf(rec.id))
			if rec.id != row.ResourceID {
				ids = append(ids, row.ResourceID)
				v.known = append(v.known, keyOf(row.ResourceID))
			}
			prevFlagged = flagged
			prevHash = row.Hash
			expected = row.Seq + 1
			last = row.Seq
			if anchored && row.Seq == a.Seq {
				headHash = row.Hash
			}
		}
		stored, err := v.ins.Inspect(ctx, "AuditEvent", ids)
		if err != nil {
			return err
		}
		var repairs []repair
		for i := range recs {
			rec := &recs[i]
			s := stored[rec.id]
			if s == nil || s.Current == nil && len(s.History) == 0 {
				missing = append(missing, absent{seq: rec.row.Seq, id: rec.id, recorded: rec.recorded})
				continue
			}
			high = max(high, rec.row.Seq)
			fix, err := v.compare(rec, s, add)
			if err != nil {
				return err
			}
			if fix != nil {
				repairs = append(repairs, *fix)
			}
		}
		if err := v.repair(ctx, repairs); err != nil {
			return err
		}
		after = rows[len(rows)-1].Seq
	}
	v.last[chain] = last

	// The records with no copy in the FHIR store: deleted when anything
	// shows they were copied, else stale or pending by age. The copy
	// bookkeeping is read now, after every watermark was (it is never
	// behind them unless rolled back).
	copied, err := v.db.CopiedSeq(ctx, chain)
	if err != nil {
		return err
	}
	if copied < wm {
		add(Finding{Kind: FindingModified, Seq: wmSeq, Detail: fmt.Sprintf("the chain's copy bookkeeping (copied_seq %d) is behind seq %d, which record seq %d states under its hash was already copied: it was rolled back", copied, wm, wmSeq)})
	}
	if anchored && a.Copied > copied {
		add(Finding{Kind: FindingModified, Seq: a.Copied, Detail: fmt.Sprintf("the chain's copy bookkeeping (copied_seq %d) is behind its anchor's (%d): it was rolled back", copied, a.Copied)})
	}
	proof := func(seq int64) string {
		switch {
		case seq <= copied:
			return fmt.Sprintf("the chain's copy bookkeeping (copied_seq %d) says it was copied", copied)
		case seq <= wm:
			return fmt.Sprintf("record seq %d states under its hash that records up to seq %d were copied", wmSeq, wm)
		case seq < high:
			return fmt.Sprintf("a later record (seq %d) is stored, and records are copied in seq order", high)
		case anchored && seq <= a.Copied:
			return fmt.Sprintf("the anchor says records up to seq %d were copied", a.Copied)
		}
		return ""
	}
	var suspects []absent
	var why []string
	var stale []absent
	cutoff := v.o.Now().Add(-v.o.MaxPendingAge)
	for _, m := range missing {
		switch p := proof(m.seq); {
		case p != "":
			suspects, why = append(suspects, m), append(why, p)
		case v.o.MaxPendingAge > 0 && m.recorded.Before(cutoff):
			stale = append(stale, m)
		default:
			v.rep.Pending++
		}
	}
	// A second look: the evidence may be younger than the first (a record
	// copied while verify ran).
	for i := 0; i < len(suspects); i += verifyPage {
		part := suspects[i:min(i+verifyPage, len(suspects))]
		ids := make([]string, len(part))
		for j, m := range part {
			ids[j] = m.id
		}
		stored, err := v.ins.Inspect(ctx, "AuditEvent", ids)
		if err != nil {
			return err
		}
		for j, m := range part {
			if s := stored[m.id]; s != nil && (s.Current != nil || len(s.History) > 0) {
				v.rep.Pending++ // copied meanwhile: checked by the next run
				continue
			}
			add(Finding{Kind: FindingDeleted, Seq: m.seq, Resource: "AuditEvent/" + m.id,
				Detail: "AuditEvent resource missing from the FHIR store (no current version, no history), though " + why[i+j]})
		}
	}
	if len(stale) > 0 {
		f := Finding{Kind: FindingStale, Seq: stale[0].seq,
			Detail: fmt.Sprintf("%d records recorded more than %s ago are not in the FHIR store and nothing shows they were copied: an instance that stopped before its copy caught up and has not been restarted since (a start copies them), or AuditEvents deleted and the copy bookkeeping rolled back", len(stale), v.o.MaxPendingAge)}
		if len(stale) == 1 {
			f.Resource = "AuditEvent/" + stale[0].id
		} else {
			f.To = stale[len(stale)-1].seq
		}
		add(f)
	}
	if anchored {
		switch {
		case last < a.Seq:
			add(Finding{Kind: FindingTruncated, Seq: last + 1, Detail: fmt.Sprintf("chain ends at seq %d but its anchored head is seq %d", last, a.Seq)})
		case headHash != "" && headHash != a.Hash:
			add(Finding{Kind: FindingModified, Seq: a.Seq, Detail: "record at the anchored head differs from the anchor"})
		}
	}
	slices.SortStableFunc(fs, func(x, y Finding) int { return cmp.Compare(x.Seq, y.Seq) })
	v.rep.Findings = append(v.rep.Findings, fs...)
	return nil
}

// parseRecord reads the id, version and recorded time from the hashed
// bytes of row (the columns are not covered by the hash); when the bytes
// are not a readable AuditEvent, the columns stand in.
func parseRecord(row *Row) record {
	rec := record{row: row, id: row.ResourceID, version: row.Version, recorded: row.Recorded}
	dec := json.NewDecoder(bytes.NewReader(row.Body))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return rec
	}
	rec.doc = m
	if id, ok := m["id"].(string); ok && id != "" {
		rec.id = id
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		if s, ok := meta["versionId"].(string); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				rec.version = n
			}
		}
		if s, ok := meta["lastUpdated"].(string); ok {
			if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
				rec.recorded = tm.UTC()
			}
		}
	}
	return rec
}

// columnsDiffer compares the chain row's unhashed columns with its hashed
// bytes.
func (rec *record) columnsDiffer() string {
	var d []string
	row := rec.row
	if rec.doc == nil {
		return "the chained bytes are not a readable AuditEvent"
	}
	if row.ResourceID != rec.id {
		d = append(d, fmt.Sprintf("resource_id %q but the hashed bytes are AuditEvent %q", row.ResourceID, rec.id))
	}
	if row.Version != rec.version {
		d = append(d, fmt.Sprintf("version %d but the hashed bytes are version %d", row.Version, rec.version))
	}
	if !row.Recorded.Equal(rec.recorded) {
		d = append(d, fmt.Sprintf("recorded_at %s but the hashed bytes were recorded at %s", fhirtime.FormatInstant(row.Recorded), fhirtime.FormatInstant(rec.recorded)))
	}
	if len(d) == 0 {
		return ""
	}
	return "the chain row's columns differ from its hashed bytes: " + strings.Join(d, "; ")
}

// repair is the index an intact AuditEvent must have.
type repair struct {
	id string
	ix store.Index
}

// compare checks every stored copy of rec's AuditEvent. It returns the
// index rebuild to do when only the index rows are wrong and repairing
// was asked for.
func (v *verifier) compare(rec *record, s *store.Stored, add func(Finding)) (*repair, error) {
	row := rec.row
	res := "AuditEvent/" + rec.id
	ms := rec.recorded.UnixMilli()
	var del, mod []string
	check := func(what string, r *store.Resource) {
		if !bytes.Equal(r.Body, row.Body) {
			mod = append(mod, what+" bytes differ from the chained record")
		}
		if r.LastUpdated.UnixMilli() != ms {
			mod = append(mod, fmt.Sprintf("%s last_updated is %s, the record was written at %s", what, fhirtime.FormatInstant(r.LastUpdated), fhirtime.FormatInstant(rec.recorded)))
		}
		if r.Method != "POST" {
			mod = append(mod, fmt.Sprintf("%s was written by %s (AuditEvents are only created)", what, r.Method))
		}
	}
	cur := s.Current
	switch {
	case cur == nil:
		del = append(del, "no current version (read and search do not serve it)")
	case cur.Deleted:
		del = append(del, "deleted in the FHIR store")
	default:
		if cur.VersionID != rec.version {
			mod = append(mod, fmt.Sprintf("the current version is %d, the chained record is version %d", cur.VersionID, rec.version))
		}
		check("the current version's", cur)
	}
	var orig *store.Resource
	others := 0
	for i := range s.History {
		if h := &s.History[i]; h.VersionID == rec.version && orig == nil {
			orig = h
		} else {
			others++
		}
	}
	switch {
	case orig == nil:
		del = append(del, fmt.Sprintf("history version %d missing (vread and _history do not serve it)", rec.version))
	case orig.Deleted:
		del = append(del, fmt.Sprintf("history version %d is a delete marker", rec.version))
	default:
		check(fmt.Sprintf("history version %d's", rec.version), orig)
	}
	if others > 0 {
		mod = append(mod, fmt.Sprintf("the history holds %d other version(s) (an AuditEvent is never updated)", others))
	}
	if len(del) > 0 {
		add(Finding{Kind: FindingDeleted, Seq: row.Seq, Resource: res, Detail: "AuditEvent resource: " + strings.Join(del, "; ")})
	}
	if len(mod) > 0 {
		add(Finding{Kind: FindingModified, Seq: row.Seq, Resource: res, Detail: "AuditEvent resource differs from the chained record: " + strings.Join(mod, "; ")})
	}
	// The index rows belong to the current version: checked when it is
	// the chained record (otherwise the finding above covers them).
	if len(del) > 0 || len(mod) > 0 || v.o.Indexer == nil || rec.doc == nil {
		return nil, nil
	}
	if rec.wantErr != nil {
		return nil, fmt.Errorf("audit: verify: index record %s/%d: %w", row.Chain, row.Seq, rec.wantErr)
	}
	// The copy stores the rows no search tells apart from others once
	// (compactIndex); records copied before it did have them all. Either
	// answers every search alike.
	full := rec.want
	want := store.Index{Strings: slices.Clone(full.Strings), Tokens: slices.Clone(full.Tokens), References: slices.Clone(full.References),
		Dates: slices.Clone(full.Dates), Numbers: slices.Clone(full.Numbers), Quantities: slices.Clone(full.Quantities), URIs: slices.Clone(full.URIs)}
	compactIndex(&want)
	d := indexDiff(&want, &s.Index)
	if len(d) > 0 && len(indexDiff(&full, &s.Index)) == 0 {
		d = nil
	}
	if wm := want.Mask(); s.Mask != wm {
		d = append(d, fmt.Sprintf("index mask %b, expected %b", s.Mask, wm))
	}
	if len(d) == 0 {
		return nil, nil
	}
	add(Finding{Kind: FindingIndex, Seq: row.Seq, Resource: res, Detail: "search index rows differ from those of the chained record (searches answer wrongly): " + strings.Join(d, "; ")})
	if !v.o.RepairIndex {
		return nil, nil
	}
	return &repair{id: rec.id, ix: want}, nil
}

// repair rebuilds index rows from the chained records.
func (v *verifier) repair(ctx context.Context, rs []repair) error {
	if len(rs) == 0 {
		return nil
	}
	err := v.st.Update(ctx, func(tx store.Tx) error {
		iw, ok := tx.(store.IndexWriter)
		if !ok {
			return errors.New("audit: verify: the FHIR store cannot re-index")
		}
		for i := range rs {
			if err := iw.PutIndex(ctx, "AuditEvent", rs[i].id, &rs[i].ix); err != nil {
				return fmt.Errorf("audit: verify: repair AuditEvent/%s: %w", rs[i].id, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	v.rep.Repaired += len(rs)
	return nil
}

// indexDiff describes how the stored index rows differ from the wanted
// ones (as multisets).
func indexDiff(want, got *store.Index) []string {
	w, g := indexKeys(want), indexKeys(got)
	var missing, extra []string
	i, j := 0, 0
	for i < len(w) || j < len(g) {
		switch {
		case j == len(g) || i < len(w) && w[i] < g[j]:
			missing = append(missing, w[i])
			i++
		case i == len(w) || g[j] < w[i]:
			extra = append(extra, g[j])
			j++
		default:
			i++
			j++
		}
	}
	var d []string
	if len(missing) > 0 {
		d = append(d, fmt.Sprintf("%d missing (%s)", len(missing), params(missing)))
	}
	if len(extra) > 0 {
		d = append(d, fmt.Sprintf("%d extra (%s)", len(extra), params(extra)))
	}
	return d
}

// params lists the distinct parameter names of index row keys.
func params(keys []string) string {
	var ps []string
	for _, k := range keys {
		p := strings.SplitN(k, "\x00", 3)[1]
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return strings.Join(ps, ", ")
}

// indexKeys encodes every index row as a comparable string, sorted.
func indexKeys(ix *store.Index) []string {
	var out []string
	k := func(parts ...string) { out = append(out, strings.Join(parts, "\x00")) }
	g := func(n int32) string { return strconv.FormatInt(int64(n), 10) }
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	i := func(x int64) string { return strconv.FormatInt(x, 10) }
	for _, r := range ix.Strings {
		k("string", r.Param, g(r.Group), r.Norm, r.Exact)
	}
	for _, r := range ix.Tokens {
		k("token", r.Param, g(r.Group), r.System, r.Code, r.Text)
	}
	for _, r := range ix.References {
		k("reference", r.Param, g(r.Group), r.TargetType, r.TargetID, r.URL)
	}
	for _, r := range ix.Dates {
		k("date", r.Param, g(r.Group), i(r.Lo), i(r.Hi))
	}
	for _, r := range ix.Numbers {
		k("number", r.Param, g(r.Group), f(r.Lo), f(r.Hi))
	}
	for _, r := range ix.Quantities {
		k("quantity", r.Param, g(r.Group), r.System, r.Code, r.Unit, f(r.Lo), f(r.Hi))
	}
	for _, r := range ix.URIs {
		k("uri", r.Param, g(r.Group), r.URI)
	}
	sort.Strings(out)
	return out
}

// inserted reports the AuditEvents of the FHIR store (current or history
// rows) that no chain contains.
func (v *verifier) inserted(ctx context.Context) error {
	slices.SortFunc(v.known, func(a, b idKey) int { return bytes.Compare(a[:], b[:]) })
	isKnown := func(id string) bool {
		k := keyOf(id)
		if _, ok := slices.BinarySearchFunc(v.known, k, func(a, b idKey) int { return bytes.Compare(a[:], b[:]) }); ok {
			return true
		}
		return v.late[k]
	}
	var unknown []string
	seen := map[string]bool{}
	err := v.ins.EachID(ctx, "AuditEvent", func(id string) error {
		if !isKnown(id) && !seen[id] {
			seen[id] = true
			unknown = append(unknown, id)
		}
		return nil
	})
	if err != nil || len(unknown) == 0 {
		return err
	}
	// Records appended (and copied) while verify ran are in no chain page
	// it read: read the chains' new tails.
	if err := v.catchUp(ctx); err != nil {
		return err
	}
	slices.Sort(unknown)
	for _, id := range unknown {
		if !isKnown(id) {
			v.rep.add(Finding{Kind: FindingInserted, Resource: "AuditEvent/" + id, Detail: "AuditEvent resource not in any chain"})
		}
	}
	return nil
}

// catchUp adds to the known ids the records appended since the walk,
// including those of chains started since.
func (v *verifier) catchUp(ctx context.Context) error {
	chains, err := v.db.Chains(ctx)
	if err != nil {
		return err
	}
	if v.late == nil {
		v.late = map[idKey]bool{}
	}
	for _, ch := range chains {
		for after := v.last[ch]; ; {
			rows, err := v.db.Page(ctx, ch, after, verifyPage)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				break
			}
			for i := range rows {
				v.late[keyOf(rows[i].ResourceID)] = true
				v.late[keyOf(parseRecord(&rows[i]).id)] = true
			}
			after = rows[len(rows)-1].Seq
		}
	}
	return nil
}

// belongsAt finds the position near row.Seq at which the record's hash
// was computed (a record moved by a reorder).
func belongsAt(row *Row) (int64, bool) {
	for d := int64(1); d <= 16; d++ {
		for _, s := range []int64{row.Seq - d, row.Seq + d} {
			if s > 0 && row.LinkHash(s) == row.Hash {
				return s, true
			}
		}
	}
	return 0, false
}

// ReadAnchors reads chain heads from an audit stream or lapis audit heads
// output (JSON lines): the last seq and hash seen per chain, from record
// and anchor lines, and the highest copy watermark ("copied") of its
// anchor lines.
func ReadAnchors(r io.Reader) (map[string]Anchor, error) {
	out := map[string]Anchor{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var l struct {
			Chain  string `json:"chain"`
			Seq    int64  `json:"seq"`
			Hash   string `json:"hash"`
			Copied int64  `json:"copied"`
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("audit stream: %w", err)
		}
		if l.Chain == "" || l.Hash == "" {
			continue
		}
		cur, ok := out[l.Chain]
		if !ok || l.Seq > cur.Seq {
			cur.Seq, cur.Hash = l.Seq, l.Hash
		}
		cur.Copied = max(cur.Copied, min(l.Copied, l.Seq))
		out[l.Chain] = cur
	}
	return out, sc.Err()
}
