package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// TestStaleReadsTheChainsEnds: the recovery's look for stale chains, which
// runs every minute beside the live copy, reads the last record of a
// chain through the primary key, not every record of it. On PostgreSQL,
// with a chain of 3,000 records not yet copied, the statement touches a
// handful of buffers (the MAX over the chain's recorded_at read all its
// heap pages: seconds, JIT-compiled, at the size of a busy hour). Stale
// still reports the chain once its last record is older than the bound,
// and not before.
func TestStaleReadsTheChainsEnds(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, pgtest.New(t))
	start := time.UnixMilli(1700000000000).UTC()
	if err := db.StartChain(ctx, "c1", "h", start); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var rows []Row
	prev := Genesis
	for i := 1; i <= n; i++ {
		r := Row{Chain: "c1", Seq: int64(i), PrevHash: prev, ResourceID: fmt.Sprint("ae", i), Version: 1, Recorded: start.Add(time.Duration(i) * time.Millisecond),
			Body: []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","id":"ae%d","x":"%s"}`, i, strings.Repeat("x", 200))), Format: 2, Watermark: 0}
		r.Hash = r.LinkHash(r.Seq)
		prev = r.Hash
		rows = append(rows, r)
	}
	if err := db.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, "ANALYZE audit_chain, audit_record"); err != nil {
		t.Fatal(err)
	}
	last := rows[n-1].Recorded
	for _, c := range []struct {
		olderThan time.Time
		stale     bool
	}{{last, false}, {last.Add(time.Millisecond), true}} {
		got, err := db.Stale(ctx, c.olderThan)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["c1"]; ok != c.stale {
			t.Fatalf("Stale(last record + %s) = %v, want the chain listed: %v", c.olderThan.Sub(last), got, c.stale)
		}
	}

	var plan string
	if err := db.SQL().QueryRowContext(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, FORMAT JSON) "+db.q(staleSQL), last.Add(time.Millisecond).UnixMilli()).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var top []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		}
	}
	if err := json.Unmarshal([]byte(plan), &top); err != nil || len(top) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", plan, err)
	}
	if b := top[0].Plan.Hit + top[0].Plan.Read; b > 30 {
		t.Errorf("the look for stale chains touched %d buffers for a chain of %d records, want a few (its ends):\n%s", b, n, plan)
	}
}
