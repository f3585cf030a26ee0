package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// startProfiling, when LAPIS_CPUPROFILE names a path prefix, writes CPU
// profiles in windows: the first starts at once, and each SIGUSR1 ends the
// current window (PREFIX.PID.N) and starts the next. A development aid for
// profiling a running server phase by phase (lapis-bench -mode real).
func startProfiling() {
	prefix := os.Getenv("LAPIS_CPUPROFILE")
	if prefix == "" {
		return
	}
	n := 0
	var f *os.File
	begin := func() {
		var err error
		f, err = os.Create(fmt.Sprintf("%s.%d.%d", prefix, os.Getpid(), n))
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			return
		}
		n++
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
		}
	}
	begin()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			pprof.StopCPUProfile()
			f.Close()
			begin()
		}
	}()
}
