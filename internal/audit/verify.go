package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/lapis-health/lapis/internal/store"
)

// Kinds of verification findings.
const (
	FindingModified  = "modified"  // a record's bytes (chain copy or FHIR resource) changed
	FindingDeleted   = "deleted"   // a record (chain row or FHIR resource) is missing
	FindingReordered = "reordered" // a record sits at another position than it was written at
	FindingBroken    = "broken"    // a record does not link to its predecessor (rewritten chain)
	FindingInserted  = "inserted"  // an AuditEvent resource that no chain contains
	FindingTruncated = "truncated" // a chain ends before an externally anchored head
)

// Finding is one problem verify found.
type Finding struct {
	Kind     string `json:"kind"`
	Chain    string `json:"chain,omitempty"`
	Seq      int64  `json:"seq,omitempty"`
	Resource string `json:"resource,omitempty"`
	Detail   string `json:"detail"`
}

// Report is the result of Verify.
type Report struct {
	OK       bool      `json:"ok"`
	Chains   int       `json:"chains"`
	Records  int       `json:"records"`
	Pending  int       `json:"pending"` // records not yet stored as resources (a writer is behind or crashed)
	Findings []Finding `json:"findings"`
}

// Anchor is an externally kept chain head (from the audit stream or the
// log line "audit chain head").
type Anchor struct {
	Seq  int64
	Hash string
}

// Resources reads the FHIR store; store.Store implements it.
type Resources interface {
	Read(ctx context.Context, typ, id string) (*store.Resource, error)
	Search(ctx context.Context, q *store.Query) (*store.SearchResult, error)
}

// Verify walks every chain: each record's hash over (chain, seq, previous
// hash, stored bytes), the links between consecutive records, gaps in the
// sequence, the AuditEvent resource of each record, AuditEvents no chain
// contains, and the anchored heads when given.
func Verify(ctx context.Context, db *DB, st Resources, anchors map[string]Anchor) (*Report, error) {
	rep := &Report{Findings: []Finding{}}
	chains, err := db.Chains(ctx)
	if err != nil {
		return nil, err
	}
	rep.Chains = len(chains)
	known := map[string]struct{}{}
	for _, ch := range chains {
		if err := verifyChain(ctx, db, st, ch, anchors, known, rep); err != nil {
			return nil, err
		}
	}
	for ch, a := range anchors {
		if !contains(chains, ch) && a.Seq > 0 {
			rep.add(Finding{Kind: FindingTruncated, Chain: ch, Seq: 1, Detail: fmt.Sprintf("chain missing entirely; anchored head was seq %d", a.Seq)})
		}
	}
	// AuditEvents no chain contains.
	for off := 0; ; off += 1000 {
		res, err := st.Search(ctx, &store.Query{Type: "AuditEvent", Count: 1000, Offset: off, Total: store.TotalNone,
			Sort: []store.SortKey{{Param: "_id", Type: "token"}}})
		if err != nil {
			return nil, err
		}
		for _, r := range res.Matches {
			if _, ok := known[r.ID]; !ok {
				rep.add(Finding{Kind: FindingInserted, Resource: "AuditEvent/" + r.ID, Detail: "AuditEvent resource not in any chain"})
			}
		}
		if !res.HasMore || len(res.Matches) == 0 {
			break
		}
	}
	rep.OK = len(rep.Findings) == 0
	return rep, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

func verifyChain(ctx context.Context, db *DB, st Resources, chain string, anchors map[string]Anchor, known map[string]struct{}, rep *Report) error {
	expected := int64(1)
	prevHash := Genesis
	prevFlagged := false
	var last int64
	hashAt := map[int64]string{}
	a, anchored := anchors[chain]
	for after := int64(0); ; {
		rows, err := db.Page(ctx, chain, after, 1000)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		for i := range rows {
			row := &rows[i]
			rep.Records++
			known[row.ResourceID] = struct{}{}
			res := "AuditEvent/" + row.ResourceID
			gap := false
			if row.Seq > expected {
				gap = true
				detail := fmt.Sprintf("record seq %d missing", expected)
				if row.Seq-expected > 1 {
					detail = fmt.Sprintf("records seq %d to %d missing", expected, row.Seq-1)
				}
				rep.add(Finding{Kind: FindingDeleted, Chain: chain, Seq: expected, Detail: detail})
			}
			flagged := false
			if Hash(chain, row.Seq, row.PrevHash, row.Body) != row.Hash {
				flagged = true
				if s, ok := belongsAt(chain, row); ok {
					rep.add(Finding{Kind: FindingReordered, Chain: chain, Seq: row.Seq, Resource: res, Detail: "record written at seq " + strconv.FormatInt(s, 10) + " is stored at seq " + strconv.FormatInt(row.Seq, 10)})
				} else {
					rep.add(Finding{Kind: FindingModified, Chain: chain, Seq: row.Seq, Resource: res, Detail: "record bytes do not match their hash"})
				}
			} else if row.PrevHash != prevHash && !gap && !prevFlagged {
				flagged = true
				rep.add(Finding{Kind: FindingBroken, Chain: chain, Seq: row.Seq, Resource: res, Detail: "record does not link to the record before it (the chain was rewritten from here, or the previous record modified)"})
			}
			// The FHIR resource must be the chain copy, byte for byte.
			r, err := st.Read(ctx, "AuditEvent", row.ResourceID)
			switch {
			case errors.Is(err, store.ErrNotFound) && !row.Materialized:
				rep.Pending++
			case errors.Is(err, store.ErrNotFound):
				rep.add(Finding{Kind: FindingDeleted, Chain: chain, Seq: row.Seq, Resource: res, Detail: "AuditEvent resource missing from the FHIR store"})
			case err != nil:
				return err
			case r.Deleted:
				rep.add(Finding{Kind: FindingDeleted, Chain: chain, Seq: row.Seq, Resource: res, Detail: "AuditEvent resource deleted in the FHIR store"})
			case r.VersionID != row.Version || !bytes.Equal(r.Body, row.Body):
				rep.add(Finding{Kind: FindingModified, Chain: chain, Seq: row.Seq, Resource: res, Detail: "AuditEvent resource differs from the chained record"})
			}
			prevFlagged = flagged
			prevHash = row.Hash
			expected = row.Seq + 1
			last = row.Seq
			if anchored && row.Seq == a.Seq {
				hashAt[row.Seq] = row.Hash
			}
		}
		after = rows[len(rows)-1].Seq
	}
	if anchored {
		switch h, ok := hashAt[a.Seq]; {
		case last < a.Seq:
			rep.add(Finding{Kind: FindingTruncated, Chain: chain, Seq: last + 1, Detail: fmt.Sprintf("chain ends at seq %d but its anchored head is seq %d", last, a.Seq)})
		case ok && h != a.Hash:
			rep.add(Finding{Kind: FindingModified, Chain: chain, Seq: a.Seq, Detail: "record at the anchored head differs from the anchor"})
		}
	}
	return nil
}

// belongsAt finds the position near row.Seq at which the record's hash
// was computed (a record moved by a reorder).
func belongsAt(chain string, row *Row) (int64, bool) {
	for d := int64(1); d <= 16; d++ {
		for _, s := range []int64{row.Seq - d, row.Seq + d} {
			if s > 0 && Hash(chain, s, row.PrevHash, row.Body) == row.Hash {
				return s, true
			}
		}
	}
	return 0, false
}

// ReadAnchors reads chain heads from an audit stream (JSON lines): the
// last seq and hash seen per chain, from record and anchor lines.
func ReadAnchors(r io.Reader) (map[string]Anchor, error) {
	out := map[string]Anchor{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var l struct {
			Chain string `json:"chain"`
			Seq   int64  `json:"seq"`
			Hash  string `json:"hash"`
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
		if cur, ok := out[l.Chain]; !ok || l.Seq > cur.Seq {
			out[l.Chain] = Anchor{Seq: l.Seq, Hash: l.Hash}
		}
	}
	return out, sc.Err()
}
