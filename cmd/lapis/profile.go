package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// startProfiling, when LAPIS_CPUPROFILE names a path prefix, writes CPU
// profiles in windows: the first starts at once, and each SIGUSR1 ends the
// current window (PREFIX.PID.N) and starts the next. A development aid for
// profiling a running server phase by phase (lapis-bench -mode real).
func startProfiling() {
	startHeapProfiling()
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

// startHeapProfiling, when LAPIS_HEAPPROFILE names a path prefix, writes a
// heap profile (in-use and allocated, after a GC) to PREFIX.PID.N at each
// SIGUSR2 (written whole under PREFIX.PID.N.tmp, then renamed), and the
// runtime's memory statistics at that moment to PREFIX.PID.N.memstats. A development aid for finding what a
// running server holds (lapis-bench -mode export); off unless the
// variable is set.
func startHeapProfiling() {
	prefix := os.Getenv("LAPIS_HEAPPROFILE")
	if prefix == "" {
		return
	}
	n := 0
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	go func() {
		for range ch {
			name := fmt.Sprintf("%s.%d.%d", prefix, os.Getpid(), n)
			f, err := os.Create(name + ".tmp")
			if err != nil {
				fmt.Fprintln(os.Stderr, "heapprofile:", err)
				continue
			}
			n++
			runtime.GC()
			err = errors.Join(pprof.WriteHeapProfile(f), f.Close(), os.Rename(name+".tmp", name))
			if err != nil {
				fmt.Fprintln(os.Stderr, "heapprofile:", err)
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			stats := fmt.Sprintf("heap in use %d MB, idle %d MB, released %d MB; stacks %d MB; sys %d MB; next GC %d MB; GCs %d\n",
				m.HeapInuse>>20, m.HeapIdle>>20, m.HeapReleased>>20, m.StackInuse>>20, m.Sys>>20, m.NextGC>>20, m.NumGC)
			if err := os.WriteFile(name+".memstats", []byte(stats), 0o600); err != nil {
				fmt.Fprintln(os.Stderr, "heapprofile:", err)
			}
		}
	}()
}
