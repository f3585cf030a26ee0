package audit

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAppendRoundTrip appends a batch of chain rows of both hash formats
// (COPY on PostgreSQL, multi-row INSERTs on SQLite) with a record in a
// batch that already exists, and reads them back: all or nothing, and
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
		// A batch holding a seq already stored fails as a whole.
		if err := db.Append(ctx, rows[39:]); err == nil {
			t.Fatal("append of a stored seq succeeded")
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
