package audit

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAppendRoundTrip appends a batch of chain rows of both hash formats
// (COPY on PostgreSQL, multi-row INSERTs on SQLite) with a record in a
// batch that already exists (first or last), a seq twice in a batch and
// a cancelled context, and reads them back: all or nothing, and
// every column as given (a format 1 row's watermark stays NULL).
func TestAppendRoundTrip(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openDB(t, url)
		at := time.UnixMilli(1700000000123).UTC()
		var rows []Row
		prev := Genesis
		for i := 1; i <= 70; i++ { // more than the largest INSERT (64 rows)
			r := Row{Chain: "c1", Seq: int64(i), PrevHash: prev, ResourceID: fmt.Sprint("ae", i), Version: 1, Recorded: at,
				Body: []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","id":"ae%d","x":"%s"}`, i, strings.Repeat("é", i))), Format: 1 + i%2, Watermark: int64(i / 2)}
			if r.Format == 1 {
				r.Watermark = 0
			}
			r.Hash = r.LinkHash(r.Seq)
			prev = r.Hash
			rows = append(rows, r)
		}
		if err := db.Append(ctx, rows[:40]); err != nil {
			t.Fatal(err)
		}
		// A batch holding a seq already stored fails as a whole, also when
		// it is the last row, as does one holding a seq twice, and one
		// whose context is cancelled; the next batch goes through.
		for name, batch := range map[string][]Row{
			"a stored seq first": rows[39:],
			"a stored seq last":  append(append([]Row(nil), rows[40:]...), rows[3]),
			"a seq twice":        append(append([]Row(nil), rows[40:]...), rows[50]),
		} {
			if err := db.Append(ctx, batch); err == nil {
				t.Fatalf("append of a batch with %s succeeded", name)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := db.Append(cctx, rows[40:]); err == nil {
			t.Fatal("append with a cancelled context succeeded")
		}
		if err := db.Append(ctx, rows[40:]); err != nil {
			t.Fatal(err)
		}
		got, err := db.Page(ctx, "c1", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rows) {
			t.Fatalf("%d rows read back, want %d", len(got), len(rows))
		}
		for i := range rows {
			if !reflect.DeepEqual(got[i], rows[i]) {
				t.Fatalf("row %d read back as %+v, want %+v", i, got[i], rows[i])
			}
		}
		db.Close()
		if err := db.Append(ctx, rows[:1]); err == nil {
			t.Fatal("append to a closed chain table succeeded")
		}
	})
}

// TestLostAppendReply answers an error for a batch that was committed (a
// reply lost after COMMIT): the writer finds its batch at the chain's head
// and reports success, and later batches still link to the chain — before,
// the retries collided with the stored batch, the records were reported
// lost, and every later batch failed the same way.
func TestLostAppendReply(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		calls := 0
		e := open(t, url, func(c *Config) {
			c.DB.afterAppend = func(err error) error {
				calls++
				if calls == 2 && err == nil {
					return errors.New("connection reset by peer")
				}
				return err
			}
		})
		for i := range 3 {
			if err := e.rec.Commit(context.Background(), readEvent(i)); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
		e.rec.Close()
		if rep := verify(t, e); !rep.OK || rep.Records != 3 {
			t.Fatalf("%+v", rep)
		}
	})
}

// TestAppendStatementsBySQLiteOnly checks that opening the chain table
// prepares Append's multi-row INSERTs on SQLite only: PostgreSQL appends
// with COPY, and preparing them there cost every process that opens the
// table (each admin command that records an event) round trips for
// statements it never runs. Append works on both, and fails once closed.
func TestAppendStatementsBySQLiteOnly(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		db := openDB(t, url)
		want := len(appendSizes)
		if db.Postgres() {
			want = 0
		}
		if got := len(db.appendStmts); got != want {
			t.Fatalf("%d INSERT statements prepared, want %d", got, want)
		}
		r := Row{Chain: "c1", Seq: 1, PrevHash: Genesis, ResourceID: "ae1", Version: 1, Recorded: time.UnixMilli(1700000000000).UTC(),
			Body: []byte(`{"resourceType":"AuditEvent","id":"ae1"}`), Format: 1}
		r.Hash = r.LinkHash(1)
		if err := db.Append(context.Background(), []Row{r}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		r.Seq, r.PrevHash, r.ResourceID = 2, r.Hash, "ae2"
		r.Hash = r.LinkHash(2)
		if err := db.Append(context.Background(), []Row{r}); err == nil {
			t.Fatal("append to a closed chain table succeeded")
		}
	})
}
