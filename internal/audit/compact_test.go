package audit

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/search"
	"github.com/lapis-health/lapis/internal/store"
)

// The copy's index rows (compactIndex) answer every search as the rows
// of the R4 extraction do, on both dialects: each record is stored twice,
// once with every row ("full-N") and once compacted ("compact-N"), and
// every search a row of the full index answers — each search parameter
// by system|code, code, :text, Type/id, id, a version-specific value, the
// URL as written, string, :exact, :contains, date prefixes, uri, :below,
// :missing — finds full-N exactly when it finds compact-N.
func TestCompactIndexSearchesAlike(t *testing.T) {
	reg, ex := registry(t)
	type rec struct{ full, compact store.Index }
	var recs []rec
	var bodies [][]byte
	events := []Event{readEvent(1),
		// A read of a Patient: it is both the patient and the resource read.
		{Time: time.UnixMilli(1700000000123).UTC(), Kind: KindREST, Action: "R", Interaction: "read", Outcome: OutcomeSuccess, Status: 200,
			ClientID: "app", Method: "apikey", CredentialID: "k1", Address: "127.0.0.1", Patient: "p1", Returned: 1,
			Entities: []Entity{{Type: "Patient", ID: "p1", Version: "1", Role: "domain"}}}}
	events = append(events, probeEvents()...)
	for _, x := range randomAuditEvents(7, 40) {
		events = append(events, x.ev)
	}
	compacted := 0
	for i := range events {
		ev := &events[i]
		ae := newAuditEvent(ev, fmt.Sprint("id", i), ev.Time, Source{Site: base, Instance: "chain-1"})
		full, err := ex.Extract(ae.toMap())
		if err != nil {
			t.Fatal(err)
		}
		w, err := prepareWrite(ex, &Row{Chain: "c", Seq: int64(i + 1), ResourceID: ae.ID, Version: 1, Recorded: ev.Time, Body: ae.appendJSON(nil)}, ae, true)
		if err != nil {
			t.Fatal(err)
		}
		if rows(w.Index) < rows(full) {
			compacted++
		}
		recs = append(recs, rec{full, w.Index})
		bodies = append(bodies, w.Body)
	}
	if rows(recs[1].full)-rows(recs[1].compact) != 3 {
		t.Fatalf("a Patient read's record: %d rows, compacted %d, want 3 fewer", rows(recs[1].full), rows(recs[1].compact))
	}
	t.Logf("%d of %d records have fewer rows", compacted, len(recs))

	// The searches the full rows answer.
	var queries []url.Values
	q := func(kv ...string) {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		queries = append(queries, v)
	}
	for _, r := range recs {
		for _, x := range r.full.Tokens {
			q(x.Param, x.System+"|"+x.Code)
			q(x.Param, x.Code)
			if x.Text != "" {
				q(x.Param+":text", x.Text)
			}
			q(x.Param+":missing", "false")
			q(x.Param+":not", x.Code)
		}
		for _, x := range r.full.References {
			q(x.Param, x.URL)
			if x.TargetType != "" {
				q(x.Param, x.TargetType+"/"+x.TargetID)
				q(x.Param, x.TargetType+"/"+x.TargetID+"/_history/7")
				q(x.Param+":"+x.TargetType, x.TargetID)
				q(x.Param, x.TargetID)
			}
			q(x.Param+":missing", "true")
		}
		for _, x := range r.full.Strings {
			q(x.Param, x.Exact)
			q(x.Param+":exact", x.Exact)
			if len(x.Norm) > 2 {
				q(x.Param+":contains", x.Norm[1:len(x.Norm)-1])
			}
		}
		for _, x := range r.full.Dates {
			at := time.UnixMilli(x.Lo).UTC().Format("2006-01-02T15:04:05.000Z")
			for _, p := range []string{"eq", "ge", "gt", "lt", "le", "ne"} {
				q(x.Param, p+at)
			}
			q(x.Param, at[:10])
		}
		for _, x := range r.full.URIs {
			q(x.Param, x.URI)
			if strings.HasPrefix(x.URI, "http") {
				q(x.Param+":below", x.URI[:strings.LastIndexByte(x.URI, '/')])
			}
		}
	}
	slices.SortFunc(queries, func(a, b url.Values) int { return strings.Compare(a.Encode(), b.Encode()) })
	queries = slices.CompactFunc(queries, func(a, b url.Values) bool { return a.Encode() == b.Encode() })

	dialects(t, func(t *testing.T, u string) {
		st, _ := stores(t, u)
		ctx := context.Background()
		err := st.Update(ctx, func(tx store.Tx) error {
			for i, r := range recs {
				for name, ix := range map[string]store.Index{"full": r.full, "compact": r.compact} {
					if err := tx.Put(ctx, &store.Write{Type: "AuditEvent", ID: fmt.Sprintf("%s-%d", name, i), Version: 1, LastUpdated: time.Now(),
						Method: "POST", Body: bodies[i], Index: ix}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		p := search.NewParser(reg, base, 10000, 10000)
		found := 0
		for _, q := range queries {
			// The dialects run in parallel: each its own copy.
			v := maps.Clone(q)
			v.Set("_count", "10000")
			req, err := p.Parse("AuditEvent", v, true)
			if err != nil {
				continue // a value this parameter does not take
			}
			res, err := st.Search(ctx, &req.Query)
			if err != nil {
				t.Fatalf("%s: %v", v.Encode(), err)
			}
			full, compact := map[string]bool{}, map[string]bool{}
			for _, m := range res.Matches {
				name, n, _ := strings.Cut(m.ID, "-")
				if name == "full" {
					full[n] = true
				} else {
					compact[n] = true
				}
			}
			for n := range recs {
				k := fmt.Sprint(n)
				if full[k] != compact[k] {
					t.Fatalf("%s: full record %d found %v, compacted found %v\nfull    %+v\ncompact %+v", v.Encode(), n, full[k], compact[k], recs[n].full, recs[n].compact)
				}
			}
			found += len(full)
		}
		if found == 0 {
			t.Fatal("no search found anything")
		}
		t.Logf("%d searches, %d records found", len(queries), found)
	})
}

func rows(ix store.Index) int {
	return len(ix.Strings) + len(ix.Tokens) + len(ix.References) + len(ix.Dates) + len(ix.Numbers) + len(ix.Quantities) + len(ix.URIs)
}
