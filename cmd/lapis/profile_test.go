package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestProfileWindows: with LAPIS_CPUPROFILE set, SIGUSR1 closes the
// current CPU profile window (a complete gzipped profile) and opens the
// next.
func TestProfileWindows(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "cpu")
	t.Setenv("LAPIS_CPUPROFILE", prefix)
	startProfiling()
	defer pprof.StopCPUProfile()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	next := fmt.Sprintf("%s.%d.1", prefix, os.Getpid())
	poll.Until(t, 30*time.Second, next+" created after SIGUSR1", func() bool { _, err := os.Stat(next); return err == nil })
	b, err := os.ReadFile(fmt.Sprintf("%s.%d.0", prefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	// A finished profile is gzip-compressed protobuf.
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("window 0 is not a finished profile (%d bytes)", len(b))
	}
}

// TestHeapProfile: with LAPIS_HEAPPROFILE set, each SIGUSR2 writes a
// complete heap profile to PREFIX.PID.N.
func TestHeapProfile(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "heap")
	t.Setenv("LAPIS_HEAPPROFILE", prefix)
	startHeapProfiling()
	for n := 0; n < 2; n++ {
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%s.%d.%d", prefix, os.Getpid(), n)
		poll.Until(t, 30*time.Second, name+" created after SIGUSR2", func() bool { _, err := os.Stat(name); return err == nil })
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Fatalf("heap profile %d is not a finished profile (%d bytes)", n, len(b))
		}
	}
}
