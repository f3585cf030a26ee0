package audit

import (
	"bytes"
	"testing"
)

// TestLinkScratchMatchesHashV2: the writer's hashing in a reused buffer
// gives HashV2's hash for every record, whatever the sizes of the
// records before it (a shorter body after a longer one, a longer after a
// shorter), so verify accepts what the writer chains.
func TestLinkScratchMatchesHashV2(t *testing.T) {
	var s linkScratch
	prev := Genesis
	for i, n := range []int{2000, 10, 0, 5000, 1, 2500} {
		body := bytes.Repeat([]byte{byte('a' + i)}, n)
		seq, wm := int64(i+1), int64(i*7)
		got := s.hashV2("chain-1", seq, prev, wm, body)
		if want := HashV2("chain-1", seq, prev, wm, body); got != want {
			t.Fatalf("record %d: %s, want %s", seq, got, want)
		}
		prev = got
	}
	if allocs := testing.AllocsPerRun(100, func() { s.hashV2("chain-1", 12345, Genesis, 12000, []byte("{}")) }); allocs > 1 {
		t.Errorf("%v allocations per hash, want at most the result's", allocs)
	}
}
