package authorize

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestHashSlotsBusy: a sign-in waits at most hashWait for a password
// hashing slot, then gets errBusy (503) instead of queueing for as long
// as its request lives; a slot freed within the wait is taken.
func TestHashSlotsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &accounts{sem: make(chan struct{}, 1), wait: hashWait}
		a.sem <- struct{}{} // the only slot is busy
		start := time.Now()
		if ok, err := a.verify(context.Background(), "not a hash", "password"); ok || !errors.Is(err, errBusy) {
			t.Fatalf("verify with every slot busy: %v %v", ok, err)
		}
		if waited := time.Since(start); waited != hashWait {
			t.Fatalf("waited %v, want %v", waited, hashWait)
		}
		go func() {
			time.Sleep(hashWait / 2)
			<-a.sem
		}()
		if _, err := a.verify(context.Background(), "not a hash", "password"); err != nil {
			t.Fatalf("a slot freed within the wait: %v", err)
		}
		if len(a.sem) != 0 {
			t.Fatal("slot not released")
		}
	})
}

// TestHashSlots: half the cores, at least one, at most
// maxConcurrentHashes.
func TestHashSlots(t *testing.T) {
	for procs, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 8: 4, 64: maxConcurrentHashes} {
		if got := hashSlots(procs); got != want {
			t.Errorf("hashSlots(%d) = %d, want %d", procs, got, want)
		}
	}
}
