// Package parallel runs independent pieces of CPU-bound work (extraction
// of index rows, verification of audit records) on every core.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For runs fn(0) … fn(n-1) on up to GOMAXPROCS goroutines and returns
// when all have returned; with one core (or n ≤ 1) it runs them in order
// on the calling goroutine.
func For(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}
