package sqlgen

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestStatsSchedule(t *testing.T) {
	now := time.Unix(0, 0)
	s := &StatsSchedule{Now: func() time.Time { return now }}
	s.Reset(0)
	if s.Wrote(StatsMinWrites - 1) {
		t.Fatal("refresh below StatsMinWrites")
	}
	if !s.Wrote(1) {
		t.Fatal("no refresh of an empty store after StatsMinWrites writes")
	}
	if s.Wrote(10000) {
		t.Fatal("second refresh while one runs")
	}
	s.Done(true) // base is now StatsMinWrites + 10000
	if s.Wrote(4000) {
		t.Fatal("refresh before the data grew by StatsGrowth")
	}
	if !s.Wrote(2000) {
		t.Fatal("no refresh after the data grew by StatsGrowth")
	}
	s.Done(false)
	if !s.Wrote(1) {
		t.Fatal("a failed refresh is not retried")
	}
	s.Done(true)
	if s.Wrote(1) {
		t.Fatal("refresh right after a refresh")
	}
	now = now.Add(StatsEvery)
	if !s.Wrote(1) {
		t.Fatal("no refresh after StatsEvery")
	}
	s.Done(true)
	s.Every = -1
	now = now.Add(10 * StatsEvery)
	if s.Wrote(1) {
		t.Fatal("time-based refresh when disabled")
	}
}

func TestStatsScheduleBackground(t *testing.T) {
	s := &StatsSchedule{}
	s.Reset(0)
	release := make(chan struct{})
	var runs atomic.Int32
	refresh := func() error {
		runs.Add(1)
		<-release
		return nil
	}
	s.Background(StatsMinWrites, refresh) // due: starts, returns at once
	s.Background(StatsMinWrites*10, refresh)
	close(release)
	s.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d refreshes ran at once, want 1", n)
	}
	if s.Wrote(0) {
		t.Fatal("refresh still due after the background refresh ended")
	}
}
