package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

func openRaw(t *testing.T, readers int) *Store {
	t.Helper()
	s, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), "lapis.db"), Options{Readers: readers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rawBody(v int64) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Patient","id":"p1","meta":{"versionId":"%d"}}`, v)
}

func putVersion(t testing.TB, s *Store, v int64, deleted bool) {
	w := &store.Write{Type: "Patient", ID: "p1", Version: v, LastUpdated: time.UnixMilli(1700000000000 + v).UTC(), Method: "PUT", Deleted: deleted}
	if !deleted {
		w.Body = rawBody(v)
	}
	if v == 1 {
		w.Method = "POST"
	}
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(context.Background(), w) }); err != nil {
		t.Errorf("put v%d: %v", v, err)
	}
}

// Reads on the raw pool see whole committed versions, newest-so-far per
// reader, while a writer commits; the writer is never held up by them.
func TestRawReadDuringWrites(t *testing.T) {
	s := openRaw(t, 2)
	putVersion(t, s, 1, false)
	const versions = 200
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(0)
			for !stop.Load() {
				r, err := s.Read(context.Background(), "Patient", "p1")
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if r.VersionID < last {
					t.Errorf("version went back from %d to %d", last, r.VersionID)
					return
				}
				last = r.VersionID
				if string(r.Body) != string(rawBody(r.VersionID)) || r.Type != "Patient" || r.ID != "p1" ||
					!r.LastUpdated.Equal(time.UnixMilli(1700000000000+r.VersionID)) || r.LastUpdated.Location() != time.UTC {
					t.Errorf("torn read: %+v", r)
					return
				}
				if v, err := s.VRead(context.Background(), "Patient", "p1", 1); err != nil || v.Method != "POST" || string(v.Body) != string(rawBody(1)) {
					t.Errorf("vread v1: %+v %v", v, err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	start := time.Now()
	for v := int64(2); v <= versions; v++ {
		putVersion(t, s, v, false)
	}
	writing := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no reads ran")
	}
	r, err := s.Read(context.Background(), "Patient", "p1")
	if err != nil || r.VersionID != versions || r.Method != "PUT" {
		t.Fatalf("final read: %+v %v", r, err)
	}
	t.Logf("%d writes in %v alongside %d reads", versions-1, writing, reads.Load())
}

func TestRawReadDeletedAndMissing(t *testing.T) {
	s := openRaw(t, 1)
	putVersion(t, s, 1, false)
	putVersion(t, s, 2, true)
	r, err := s.Read(context.Background(), "Patient", "p1")
	if err != nil || !r.Deleted || r.Body != nil || r.VersionID != 2 || r.Method != "PUT" {
		t.Fatalf("deleted read: %+v %v", r, err)
	}
	if v, err := s.VRead(context.Background(), "Patient", "p1", 2); err != nil || !v.Deleted || v.Body != nil {
		t.Fatalf("deleted vread: %+v %v", v, err)
	}
	if _, err := s.Read(context.Background(), "Patient", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing read: %v", err)
	}
	if _, err := s.Read(context.Background(), "Observation", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other type: %v", err)
	}
	if _, err := s.VRead(context.Background(), "Patient", "p1", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
}

// A read honours its context before it starts and while it waits for a
// connection; the connection it waited for is not lost. It runs in a
// synctest bubble: the timeout is on the fake clock, and the second read
// is known to wait before the connection comes back.
func TestRawReadContext(t *testing.T) {
	synctest.Test(t, testRawReadContext)
}

func testRawReadContext(t *testing.T) {
	s := openRaw(t, 1)
	putVersion(t, s, 1, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "p1", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled vread: %v", err)
	}
	rc, err := s.raw.get(context.Background()) // the only connection
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer tcancel()
	if _, err := s.Read(tctx, "Patient", "p1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read without a free connection: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(context.Background(), "Patient", "p1")
		done <- err
	}()
	synctest.Wait() // the read waits for the connection
	select {
	case err := <-done:
		t.Fatalf("read without a free connection returned: %v", err)
	default:
	}
	s.raw.put(rc)
	if err := <-done; err != nil {
		t.Fatalf("read after the connection came back: %v", err)
	}
}

// Close waits for reads in flight and later reads fail cleanly.
func TestRawReadClose(t *testing.T) {
	s, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), "lapis.db"), Options{Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	putVersion(t, s, 1, false)
	rc, err := s.raw.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned with a read in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.raw.put(rc)
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := s.Read(context.Background(), "Patient", "p1"); !errors.Is(err, errStoreClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
