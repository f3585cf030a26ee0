package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, 1 * time.Millisecond}, {0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {2, 100 * time.Millisecond}, {-1, 1 * time.Millisecond}} {
		if got := percentile(lat, c.p); got != c.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile(one) = %v", got)
	}
}

func TestMostFrequent(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"b", "a", "b"}, "b"},
		{[]string{"b", "a"}, "a"}, // ties: the smallest
		{[]string{"x|2", "x|1", "x|2", "x|1", "x|3"}, "x|1"},
	} {
		if got := mostFrequent(c.in); got != c.want {
			t.Errorf("mostFrequent(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestProcCPU(t *testing.T) {
	stat := filepath.Join(t.TempDir(), "stat")
	// pid (comm with ") " inside) state ppid … utime stime …
	line := "4242 (lapis ) x) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 9 0 100\n"
	if err := os.WriteFile(stat, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := procCPU(stat); got != 1750*time.Millisecond {
		t.Errorf("procCPU = %v, want 1.75s (175 ticks)", got)
	}
	if got := procCPU(filepath.Join(t.TempDir(), "none")); got != 0 {
		t.Errorf("procCPU of a missing file = %v", got)
	}
}
