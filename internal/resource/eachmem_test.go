package resource_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/resource"
	"github.com/lapis-health/lapis/internal/store"
)

// TestEachMemoryBounded: Each over n resources of about 4 KB each (the
// Bulk Data export path) holds one page at a time: the live heap after
// a collection at the last resource is within a few pages of the one at
// the first, though the result is n times larger, and no store page is
// larger than _count.
func TestEachMemoryBounded(t *testing.T) {
	const n, count = 2000, 50
	svc, ps := pagingService(t, "sqlite", 0)
	ctx := context.Background()
	// The 4 KB are in an extension, which no search parameter indexes:
	// the bodies are as large, the index rows as small as a name's.
	pad := strings.Repeat("x", 4000)
	var tx bytes.Buffer
	tx.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			tx.WriteByte(',')
		}
		fmt.Fprintf(&tx, `{"request":{"method":"PUT","url":"Patient/m%04d"},"resource":{"resourceType":"Patient","id":"m%04d","name":[{"family":"Memova"}],"extension":[{"url":"http://lapis.test/pad","valueString":"%s"}]}}`, i, i, pad)
	}
	tx.WriteString("]}")
	if _, err := svc.Bundle(ctx, tx.Bytes(), resource.ReturnMinimal); err != nil {
		t.Fatal(err)
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var first, last uint64
	seen := 0
	err := svc.Each(ctx, "Patient", url.Values{"family": {"memova"}, "_count": {fmt.Sprint(count)}}, func(r *store.Resource) error {
		seen++
		switch seen {
		case 1:
			first = live()
		case n:
			last = live()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Fatalf("%d resources, want %d", seen, n)
	}
	// All n bodies held would be 8 MB; a page is 200 KB.
	if bound := uint64(2 << 20); last > first+bound {
		t.Fatalf("live heap grew by %d KB over %d resources (bound %d KB): Each holds more than a page", (last-first)>>10, n, bound>>10)
	}
	if ps.largest > count {
		t.Fatalf("a store page of %d resources, want at most %d", ps.largest, count)
	}
}
