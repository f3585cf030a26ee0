package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// slowQuit is the server that a slow request makes dump its goroutines
// (LAPIS_BENCH_QUIT_AFTER, watchSlow), nil when none.
var slowQuit atomic.Pointer[slowWatch]

// slowWatch sends SIGQUIT once to a server whose request outlives after.
type slowWatch struct {
	pid   int
	after time.Duration
	once  sync.Once
}

// watchSlow arms the slow-request watch on the server pid when the
// environment sets LAPIS_BENCH_QUIT_AFTER (a duration): the first GET
// that has no answer after it makes the server write its goroutine dump
// (SIGQUIT; the dump ends up in LAPIS_BENCH_SERVER_LOG) and exit. A
// diagnostic for rare stalls; the returned function disarms it.
func watchSlow(pid int) (stop func()) {
	after, err := time.ParseDuration(os.Getenv("LAPIS_BENCH_QUIT_AFTER"))
	if err != nil || after <= 0 {
		return func() {}
	}
	slowQuit.Store(&slowWatch{pid: pid, after: after})
	return func() { slowQuit.Store(nil) }
}

// onSlow starts the watch of one request to u; call the returned function
// when its answer has arrived.
func onSlow(u string) (done func()) {
	w := slowQuit.Load()
	if w == nil {
		return func() {}
	}
	t := time.AfterFunc(w.after, func() {
		w.once.Do(func() {
			fmt.Fprintf(os.Stderr, "lapis-bench: no answer after %s to %s: SIGQUIT to server %d\n", w.after, u, w.pid)
			_ = syscall.Kill(w.pid, syscall.SIGQUIT)
		})
	})
	return func() { t.Stop() }
}
