package authdb_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
)

// TestRevocationLogWrites: every revocation path appends to the log.
func TestRevocationLogWrites(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		now := time.Now().Truncate(time.Second)
		head, err := db.RevocationHead(ctx)
		if err != nil || head != 0 {
			t.Fatalf("empty log head %d %v", head, err)
		}
		if err := db.RevokeToken(ctx, "jti-1", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		fam := &authdb.Family{ID: "fam-1", ClientID: "c", Subject: "u", CreatedAt: now}
		if err := db.StartFamily(ctx, fam, "jti-f", now.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeFamily(ctx, "fam-1", now); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"ak_1", "ak_2"} {
			if err := db.CreateAPIKey(ctx, &authdb.APIKey{ID: id, Name: id, Hash: []byte(id), Prefix: "x", Scopes: []string{"system/*.rs"}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.RevokeAPIKey(ctx, "ak_1", now); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeAPIKey(ctx, "ak_1", now); err != nil { // idempotent, not logged again
			t.Fatal(err)
		}
		if err := db.RotateAPIKey(ctx, "ak_2", &authdb.APIKey{ID: "ak_3", Hash: []byte("ak_3"), Prefix: "x"}, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateClient(ctx, &authdb.Client{ID: "c-1", Name: "c", Type: authdb.Public}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteClient(ctx, "c-1"); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeAPIKey(ctx, "ak_nope", now); !errors.Is(err, authdb.ErrNotFound) {
			t.Fatal(err)
		}
		es, err := db.RevocationsSince(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, e := range es {
			if i > 0 && e.Seq <= es[i-1].Seq {
				t.Fatalf("seq not increasing: %v", es)
			}
			got = append(got, e.Kind+":"+e.Subject)
		}
		want := []string{"token:jti-1", "family:fam-1", "token:jti-f", "apikey:ak_1", "apikey:ak_2", "client:c-1"}
		if len(got) != len(want) {
			t.Fatalf("log %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("log %v, want %v", got, want)
			}
		}
		if head, _ := db.RevocationHead(ctx); head != es[len(es)-1].Seq {
			t.Fatalf("head %d", head)
		}
	})
}

// fakeLog is a revocation log whose rows can appear out of seq order (as
// concurrent PostgreSQL transactions commit).
type fakeLog struct {
	mu   sync.Mutex
	rows []authdb.RevEntry
	down bool // reads fail
}

var errLogDown = errors.New("log unreachable")

func (f *fakeLog) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeLog) add(seq int64, subject string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = append(f.rows, authdb.RevEntry{Seq: seq, Kind: authdb.RevToken, Subject: subject})
	sort.Slice(f.rows, func(i, j int) bool { return f.rows[i].Seq < f.rows[j].Seq })
}

func (f *fakeLog) RevocationsSince(_ context.Context, after int64, limit int) ([]authdb.RevEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errLogDown
	}
	var out []authdb.RevEntry
	for _, r := range f.rows {
		if r.Seq > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeLog) RevocationHead(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0, errLogDown
	}
	if len(f.rows) == 0 {
		return 0, nil
	}
	return f.rows[len(f.rows)-1].Seq, nil
}

// TestRevWatcherGaps: an entry committed after a higher seq was read is
// still delivered (once), and a gap that never fills is given up after
// GapTimeout (on synctest's fake clock).
func TestRevWatcherGaps(t *testing.T) {
	synctest.Test(t, testRevWatcherGaps)
}

func testRevWatcherGaps(t *testing.T) {
	src := &fakeLog{}
	w := authdb.NewRevWatcher(src, authdb.RevWatcherOptions{Interval: time.Hour, GapTimeout: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer w.Close()
	var mu sync.Mutex
	var got []string
	w.Subscribe(func(es []authdb.RevEntry, reset bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range es {
			got = append(got, e.Subject)
		}
	})
	if !w.Healthy() {
		t.Fatal("not healthy after first poll")
	}
	ctx := context.Background()
	src.add(1, "a")
	src.add(3, "c")
	_ = w.Sync(ctx)
	src.add(2, "b") // seq 2 commits late
	_ = w.Sync(ctx)
	_ = w.Sync(ctx)
	src.add(5, "e") // seq 4 never commits
	_ = w.Sync(ctx)
	_ = w.Sync(ctx) // gap at 4 still awaited
	time.Sleep(50*time.Millisecond + time.Nanosecond)
	_ = w.Sync(ctx) // gap at 4 given up
	src.add(6, "f")
	_ = w.Sync(ctx)
	mu.Lock()
	defer mu.Unlock()
	if want := "a c b e f"; join(got) != want {
		t.Fatalf("delivered %q, want %q", join(got), want)
	}
}

// TestRevWatcherInterval: the poller delivers a new entry at its next
// poll (so within Interval), not before; with the log unreachable the
// watcher turns unhealthy after StaleAfter (callers then bypass their
// caches), and its first good poll after that tells subscribers to reset.
// It runs on synctest's fake clock.
func TestRevWatcherInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, stale = 250 * time.Millisecond, 2 * time.Second
		src := &fakeLog{}
		w := authdb.NewRevWatcher(src, authdb.RevWatcherOptions{Interval: interval, StaleAfter: stale,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer w.Close()
		var mu sync.Mutex
		var got []string
		resets := 0
		w.Subscribe(func(es []authdb.RevEntry, reset bool) {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range es {
				got = append(got, e.Subject)
			}
			if reset {
				resets++
			}
		})
		state := func() (string, int) {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return join(got), resets
		}
		time.Sleep(interval / 2) // between polls from now on
		src.add(1, "a")
		if d, _ := state(); d != "" {
			t.Fatalf("delivered %q before the next poll", d)
		}
		time.Sleep(interval)
		if d, _ := state(); d != "a" || !w.Healthy() {
			t.Fatalf("after one interval: delivered %q, healthy %v", d, w.Healthy())
		}

		src.setDown(true)
		time.Sleep(stale - interval)
		if !w.Healthy() {
			t.Fatal("unhealthy before StaleAfter")
		}
		time.Sleep(interval)
		if w.Healthy() {
			t.Fatal("healthy after StaleAfter without a successful poll")
		}
		src.add(2, "b")
		src.setDown(false)
		time.Sleep(interval)
		if d, n := state(); d != "a b" || n != 1 || !w.Healthy() {
			t.Fatalf("after recovery: delivered %q, %d resets, healthy %v", d, n, w.Healthy())
		}
	})
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// TestLogReset: a reset entry (lapis sandbox reset) reaches the
// subscribers of this database's watcher with reset true, at once.
func TestLogReset(t *testing.T) {
	openBoth(t, func(t *testing.T, db *authdb.DB) {
		ctx := context.Background()
		var mu sync.Mutex
		resets := 0
		cancel := db.RevLog().Subscribe(func(es []authdb.RevEntry, reset bool) {
			mu.Lock()
			defer mu.Unlock()
			if reset {
				resets++
			}
		})
		defer cancel()
		if err := db.RevLog().Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.RevokeToken(ctx, "jti-r", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if resets != 0 {
			t.Errorf("a revocation delivered as a reset")
		}
		mu.Unlock()
		if err := db.LogReset(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if resets != 1 {
			t.Errorf("resets %d after LogReset, want 1", resets)
		}
	})
}
