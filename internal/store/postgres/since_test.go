package postgres_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/sqlgen"
)

// TestHistorySinceReadsTheTimeIndex: a _history?_since poll of a caller
// who may not see AuditEvents, on a history whose versions since T are
// all AuditEvents (the requests' own, copied by the audit trail), reads
// each visible type's range of the time index. As one IN list with the
// time bound, PostgreSQL estimated thousands of visible versions since T
// (types and times taken as independent) and read the whole history
// table instead, for none found.
func TestHistorySinceReadsTheTimeIndex(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1700000000000).UTC()
	// Bodies of a realistic size that compression does not shrink away.
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := func() string {
		b := make([]byte, 900)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	put := func(ws []*store.Write) {
		t.Helper()
		putBatches(t, s, ws)
		s.WaitStats()
	}
	auditEvents := func(from, n int) []*store.Write {
		var ws []*store.Write
		for i := from; i < from+n; i++ {
			ws = append(ws, &store.Write{Type: "AuditEvent", ID: fmt.Sprint("ae", i), Version: 1, LastUpdated: t0.Add(time.Minute + time.Duration(i)*time.Millisecond),
				Method: "POST", Body: []byte(`{"resourceType":"AuditEvent","x":"` + noise() + `"}`)})
		}
		return ws
	}
	// The data, then requests' AuditEvents; statistics and visibility
	// refreshed; then more AuditEvents, short of the growth that
	// refreshes them again (the state a server answering polls is in
	// most of the time).
	var ws []*store.Write
	for i := range 4000 {
		typ := []string{"Patient", "Observation"}[min(i, 1)]
		ws = append(ws, &store.Write{Type: typ, ID: fmt.Sprint("r", i), Version: 1, LastUpdated: t0, Method: "POST",
			Body: []byte(`{"resourceType":"` + typ + `","id":"r` + fmt.Sprint(i) + `","x":"` + noise() + `"}`)})
	}
	put(append(ws, auditEvents(0, 4000)...))
	if _, err := s.Pool().Exec(ctx, "VACUUM (ANALYZE) history"); err != nil {
		t.Fatal(err)
	}
	// (Written beside the store, whose own refresh would come round.)
	if _, err := s.Pool().Exec(ctx, `INSERT INTO history (rid, type, id, version, last_updated, deleted, method, body)
		SELECT rid, type, id || '-' || g, version, last_updated + g * 10000, deleted, method, body FROM history, generate_series(1, 2) g WHERE type = 'AuditEvent'`); err != nil {
		t.Fatal(err)
	}
	filter := &store.AccessFilter{Types: map[string][]store.AccessRule{"Patient": {{}}, "Observation": {{}}}}
	p := &sqlgen.Plans{}
	page, err := s.History(sqlgen.WithExplain(ctx, p), store.HistoryQuery{Since: t0.Add(time.Second), Filter: filter, TotalLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Versions) != 0 || page.Total != 0 {
		t.Fatalf("%d versions since T (total %d), want none", len(page.Versions), page.Total)
	}
	steps := p.Steps()
	if len(steps) == 0 {
		t.Fatal("no plan recorded")
	}
	for _, plan := range steps {
		if strings.Contains(plan, "Seq Scan on history") {
			t.Errorf("a statement of the _since poll reads the whole history:\n%s", strings.Join(steps, "\n--\n"))
			break
		}
	}
}
