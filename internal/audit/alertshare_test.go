package audit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// sharedAlerters are two Alerters (two instances) over one WindowStore,
// posting to one webhook; alerts counts the posts per rule.
func sharedAlerters(t *testing.T, store WindowStore) (a, b *Alerter, alerts *atomic.Int64, last *atomic.Value) {
	t.Helper()
	alerts, last = &atomic.Int64{}, &atomic.Value{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var al Alert
		_ = json.NewDecoder(r.Body).Decode(&al)
		last.Store(al)
		alerts.Add(1)
	}))
	t.Cleanup(hook.Close)
	mk := func() *Alerter {
		al, err := NewAlerter(AlertConfig{Webhook: hook.URL, VolumeLimit: 100, VolumeWindow: time.Hour, AuthFailureLimit: 3, AuthFailureWindow: time.Minute,
			Windows: store, FlushEvery: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(al.Close)
		return al
	}
	return mk(), mk(), alerts, last
}

// testSharedWindows: 60 + 50 resources returned to one client through two
// instances cross the threshold of 100 together (each alone would not),
// and exactly one alert is raised for the window.
func testSharedWindows(t *testing.T, store WindowStore) {
	a, b, alerts, last := sharedAlerters(t, store)
	for range 6 {
		a.Observe(&Event{Kind: KindREST, ClientID: "spread", Returned: 10})
	}
	poll.Until(t, 10*time.Second, "first instance's counts flushed", func() bool { return a.shared.pending() == 0 })
	for range 5 {
		b.Observe(&Event{Kind: KindREST, ClientID: "spread", Returned: 10})
	}
	poll.Until(t, 10*time.Second, "an alert for the client's total", func() bool { return alerts.Load() >= 1 })
	// More counts in the same window raise nothing more.
	a.Observe(&Event{Kind: KindREST, ClientID: "spread", Returned: 10})
	b.Observe(&Event{Kind: KindREST, ClientID: "spread", Returned: 10})
	a.Close()
	b.Close()
	if n := alerts.Load(); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
	if al := last.Load().(Alert); al.Rule != RuleVolume || al.ClientID != "spread" || al.Count != 110 {
		t.Fatalf("alert %+v", al)
	}
}

func TestSharedWindowsDB(t *testing.T) {
	dialects(t, func(t *testing.T, url string) {
		testSharedWindows(t, openDB(t, url))
	})
}

func TestSharedWindowsRedis(t *testing.T) {
	r := redistest.Start(t)
	store, err := NewRedisWindows(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	testSharedWindows(t, store)
}

type failingStore struct{}

func (failingStore) Add(context.Context, []WindowAdd) ([]int64, error) {
	return nil, errors.New("down")
}

// TestSharedWindowsFallback: when the store fails, counts go to the
// instance's own windows: the alert still comes.
func TestSharedWindowsFallback(t *testing.T) {
	a, _, alerts, _ := sharedAlerters(t, failingStore{})
	for range 4 {
		a.Observe(&Event{Kind: KindAuthnFailure, Address: "192.0.2.7"})
	}
	poll.Until(t, 10*time.Second, "alert counted in the instance", func() bool { return alerts.Load() == 1 })
}
