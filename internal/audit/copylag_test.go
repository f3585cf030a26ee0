package audit

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// TestCopyDuty checks the copy's share of a core against its lag: the
// configured duty up to the lag bound, then in proportion to the lag, up
// to the whole core.
func TestCopyDuty(t *testing.T) {
	for _, tc := range []struct {
		duty        float64
		lag, target time.Duration
		want        float64
	}{
		{0.25, 0, 30 * time.Second, 0.25},
		{0.25, 30 * time.Second, 30 * time.Second, 0.25},
		{0.25, 60 * time.Second, 30 * time.Second, 0.5},
		{0.25, 90 * time.Second, 30 * time.Second, 0.75},
		{0.25, 2 * time.Minute, 30 * time.Second, 1},
		{0.25, time.Hour, 30 * time.Second, 1},
		{0.1, time.Hour, -1, 0.1},
	} {
		if got := copyDuty(tc.duty, tc.lag, tc.target); got != tc.want {
			t.Errorf("copyDuty(%v, %v, %v) = %v, want %v", tc.duty, tc.lag, tc.target, got, tc.want)
		}
	}
}

// downStore fails every transaction while fail is set and reports
// each attempt on tried.
type downStore struct {
	Updater
	fail  atomic.Bool
	tried chan struct{}
}

func (f *downStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	select {
	case f.tried <- struct{}{}:
	default:
	}
	if f.fail.Load() {
		return errors.New("store unavailable")
	}
	return f.Updater.Update(ctx, fn)
}

// TestCopyLagReported checks that the copy reports how far searchable
// AuditEvents are behind the chain (the age of the oldest record not yet
// copied) while it cannot keep up, and 0 once it has caught up.
func TestCopyLagReported(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fs := &downStore{tried: make(chan struct{}, 1)}
	fs.fail.Store(true)
	e := open(t, "sqlite:"+filepath.Join(t.TempDir(), "lapis.db"), func(c *Config) {
		fs.Updater, c.Store = c.Store, fs
		// 50 s after the record: under the minute after which recovery
		// would take the chain for another process's idle one.
		c.Now = func() time.Time { return t0.Add(50 * time.Second) }
	})
	ev := readEvent(1)
	ev.Time = t0
	if err := e.rec.Commit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	<-fs.tried // the copy measured its lag, then failed
	if got := e.rec.CopyLag(); got != 50*time.Second {
		t.Fatalf("lag while the copy fails: %v, want 50s", got)
	}
	fs.fail.Store(false)
	e.rec.Close() // the copy catches up before Close returns
	if got := e.rec.CopyLag(); got != 0 {
		t.Fatalf("lag after the copy caught up: %v, want 0", got)
	}
}
