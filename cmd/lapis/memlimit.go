package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GOGC=400 (defaultGCPercent) lets the heap grow to five times the live
// heap between collections. With a live heap of 60–80 MB under load (a
// page of an export, the audit queue of concurrent reads, the
// definitions) that is 300–400 MB of resident memory, most of it garbage
// waiting for the next collection: a Bulk Data export of 1,000,000
// resources measured 267 MB of growth over idle, though nothing in it
// grows with the data. So, unless GOMEMLIMIT or GOGC is set, lapis also
// keeps a soft memory limit: memoryLimitFloor while the live heap is
// small (the collector runs earlier once the heap reaches it, GOGC=400's
// speed below it), and twice the live heap above that (GOGC=100's
// headroom), so that a server whose live heap outgrows the floor never
// collects continuously.
const memoryLimitFloor = 192 << 20

// memoryLimitEvery is how often the limit follows the live heap.
const memoryLimitEvery = time.Second

// memoryLimit is the soft memory limit for a live heap of live bytes.
func memoryLimit(live uint64) int64 {
	return max(memoryLimitFloor, 2*int64(live))
}

// startMemoryLimit sets the soft memory limit and keeps it following
// the live heap, unless GOMEMLIMIT or GOGC is set (then the runtime's
// settings apply as documented). It reports whether it did.
func startMemoryLimit() bool {
	_, gogc := os.LookupEnv("GOGC")
	_, limit := os.LookupEnv("GOMEMLIMIT")
	if gogc || limit {
		return false
	}
	debug.SetMemoryLimit(memoryLimit(0))
	go func() {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for range time.Tick(memoryLimitEvery) {
			metrics.Read(s)
			if s[0].Value.Kind() == metrics.KindUint64 {
				debug.SetMemoryLimit(memoryLimit(s[0].Value.Uint64()))
			}
		}
	}()
	return true
}
