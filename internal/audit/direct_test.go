package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestDirect: a Direct sink appends each event to its own chain before
// Commit returns, verifiably linked; the records stay pending until a
// recorder copies the idle chain into the FHIR store.
func TestDirect(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		ctx := context.Background()
		_, ix := registry(t)
		st, db := stores(t, url)

		d := NewDirect(db, base)
		past := time.Now().Add(-2 * time.Minute)
		d.now = func() time.Time { return past }
		if d.Chain() != "" {
			t.Fatal("a chain before the first record")
		}
		if chains, _ := db.Chains(ctx); len(chains) != 0 {
			t.Fatalf("chains before the first record: %v", chains)
		}
		// Two processes' sinks interleave; each keeps its own chain.
		other := NewDirect(db, base)
		other.now = d.now
		for i := range 3 {
			if err := d.Commit(ctx, Event{Kind: KindAdmin, Description: "admin test", ClientID: "lapis-cli"}); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				other.Record(ctx, Event{Kind: KindAPIKeyCreated, ClientID: "lapis-cli"})
			}
		}
		rows, err := db.Page(ctx, d.Chain(), 0, 10)
		if err != nil || len(rows) != 3 {
			t.Fatalf("rows %d %v", len(rows), err)
		}
		prev := Genesis
		for i, r := range rows {
			if r.Seq != int64(i+1) || r.PrevHash != prev || Hash(r.Chain, r.Seq, r.PrevHash, r.Body) != r.Hash ||
				!bytes.Contains(r.Body, []byte(`"outcomeDesc":"admin test"`)) || r.Materialized {
				t.Fatalf("row %d: %+v %s", i, r, r.Body)
			}
			prev = r.Hash
		}
		rep, err := Verify(ctx, db, st, nil)
		if err != nil || !rep.OK || rep.Chains != 2 || rep.Records != 4 || rep.Pending != 4 {
			t.Fatalf("before the copy: %+v %v", rep, err)
		}

		// A server's recorder copies the idle chains.
		rec, err := Start(ctx, Config{DB: db, Store: st, Indexer: ix, Site: base, AnchorEvery: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		poll.Try(10*time.Second, func() bool {
			rep, err = Verify(ctx, db, st, nil)
			return err == nil && rep.Pending == 0
		})
		rec.Close()
		rep, err = Verify(ctx, db, st, nil)
		if err != nil || !rep.OK || rep.Pending != 0 || rep.Records != 4 {
			t.Fatalf("after the copy: %+v %v", rep, err)
		}

		// A failed append reports ErrUnavailable and leaves the chain as
		// it was.
		db.Close()
		if err := d.Commit(ctx, Event{Kind: KindAdmin}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("commit on a closed database: %v", err)
		}
		if d.seq != 3 || d.prev != rows[2].Hash {
			t.Fatalf("chain advanced on failure: seq %d", d.seq)
		}
	})
}

// TestDirectCopiedWhileRunning: a running server's recorder copies an
// admin command's chain into the FHIR store without a restart.
func TestDirectCopiedWhileRunning(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		ctx := context.Background()
		e := open(t, url, func(c *Config) { c.RecoverEvery = time.Millisecond })
		d := NewDirect(e.db, base)
		past := time.Now().Add(-2 * time.Minute) // idle for longer than a live writer could be
		d.now = func() time.Time { return past }
		for range 2 {
			if err := d.Commit(ctx, Event{Kind: KindAdmin, Description: "admin test", ClientID: "lapis-cli"}); err != nil {
				t.Fatal(err)
			}
		}
		var rep *Report
		poll.Try(15*time.Second, func() bool { rep = verify(t, e); return rep.Pending == 0 })
		if !rep.OK || rep.Pending != 0 || rep.Records != 2 {
			t.Fatalf("the running recorder did not copy the idle chain: %+v", rep)
		}
	})
}
