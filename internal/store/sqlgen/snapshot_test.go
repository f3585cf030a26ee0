package sqlgen

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// execLog is a Querier that records the statements it executes.
type execLog struct {
	mu    sync.Mutex
	execs []execCall
}

type execCall struct {
	sql  string
	args []any
}

func (l *execLog) Query(context.Context, string, ...any) (Rows, error) { panic("no queries") }

func (l *execLog) Exec(_ context.Context, sql string, args ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.execs = append(l.execs, execCall{sql, args})
	return nil
}

// inserts returns the ids stored by each INSERT, in order.
func (l *execLog) inserts(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, e := range l.execs {
		if !strings.HasPrefix(e.sql, "INSERT INTO search_snapshot ") {
			continue
		}
		if len(e.args)%6 != 0 || strings.Count(e.sql, "(")-1 != len(e.args)/6 {
			t.Fatalf("INSERT of %d args: %s", len(e.args), e.sql)
		}
		var ids []string
		for i := 0; i < len(e.args); i += 6 {
			ids = append(ids, e.args[i].(string))
		}
		out = append(out, ids)
	}
	return out
}

// TestSnapshotWriterBatches checks that the background writer stores the
// snapshots it gathers in one INSERT (one commit), at most snapBatch at a
// time, and stores what it holds when stopped.
func TestSnapshotWriterBatches(t *testing.T) {
	for _, n := range []int{1, 3, snapBatch + 1} {
		// A delay no test waits for: a batch ends full or at stop.
		e := &Engine{D: SQLite, SnapshotDelay: time.Hour}
		log := &execLog{}
		stop := e.StartSnapshotWriter(log)
		q := &store.Query{Type: "Patient", Count: 1}
		var want []string
		for i := range n {
			id, err := e.saveSnapshot(context.Background(), nil, q, []int64{int64(i + 1), int64(i + 2)}, 2, false)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
		stop()
		got := log.inserts(t)
		wantBatches := 1
		if n > snapBatch {
			wantBatches = 2
		}
		if len(got) != wantBatches {
			t.Fatalf("%d snapshots: %d INSERTs, want %d", n, len(got), wantBatches)
		}
		var stored []string
		for _, b := range got {
			if len(b) > snapBatch {
				t.Errorf("%d snapshots: an INSERT of %d", n, len(b))
			}
			stored = append(stored, b...)
		}
		if strings.Join(stored, ",") != strings.Join(want, ",") {
			t.Errorf("%d snapshots: stored %v, want %v", n, stored, want)
		}
	}
}

// TestSnapshotWriterNoDelay checks that without a delay every snapshot is
// stored, each INSERT holding those queued when it was written.
func TestSnapshotWriterNoDelay(t *testing.T) {
	e := &Engine{D: Postgres}
	log := &execLog{}
	stop := e.StartSnapshotWriter(log)
	q := &store.Query{Type: "Patient", Count: 1}
	var want []string
	for i := range 10 {
		id, err := e.saveSnapshot(context.Background(), nil, q, []int64{int64(i + 1)}, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	stop()
	var stored []string
	for _, b := range log.inserts(t) {
		stored = append(stored, b...)
	}
	if strings.Join(stored, ",") != strings.Join(want, ",") {
		t.Errorf("stored %v, want %v", stored, want)
	}
}

// TestStoreSnapshotsEmpty checks that an empty batch runs no statement.
func TestStoreSnapshotsEmpty(t *testing.T) {
	log := &execLog{}
	if err := (&Engine{D: SQLite}).storeSnapshots(context.Background(), log, nil); err != nil || len(log.execs) != 0 {
		t.Fatalf("no snapshots: %v, %d statements", err, len(log.execs))
	}
}

// TestSnapshotWriterStopWhileSaving: searches saving snapshots while the
// store stops (the writer loaded just before it is stopped) neither panic
// on the closed queue nor lose the snapshot this instance serves.
func TestSnapshotWriterStopWhileSaving(t *testing.T) {
	for range 50 {
		e := &Engine{D: SQLite}
		stop := e.StartSnapshotWriter(&execLog{})
		var wg sync.WaitGroup
		ids := make(chan string, 4*20)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					id, err := e.saveSnapshot(context.Background(), &execLog{}, &store.Query{Type: "Patient"}, []int64{1, 2}, 2, false)
					if err != nil {
						t.Error(err)
						return
					}
					ids <- id
				}
			}()
		}
		stop()
		wg.Wait()
		close(ids)
		for id := range ids {
			if e.cache.get(id) == nil {
				t.Fatalf("snapshot %s not served from memory", id)
			}
		}
	}
}
