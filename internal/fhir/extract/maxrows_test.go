package extract

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// patientWithNames returns a Patient with n names.
func patientWithNames(n int) map[string]any {
	names := make([]any, n)
	for i := range names {
		names[i] = map[string]any{"family": fmt.Sprintf("F%d", i), "given": []any{"G"}}
	}
	return map[string]any{"resourceType": "Patient", "id": "p", "name": names}
}

// TestMaxRows: a resource with more index rows than the bound is refused
// with store.ErrTooManyIndexRows (and no rows), one under it is indexed;
// a parameter whose values run far past the bound stops soon after it.
func TestMaxRows(t *testing.T) {
	newTestExtractor(t)
	ex, err := New(testReg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	ex.maxRows = 2000
	ix, err := ex.Extract(patientWithNames(10))
	if err != nil || len(ix.Strings) == 0 {
		t.Fatalf("10 names: %d string rows, %v", len(ix.Strings), err)
	}
	ix, err = ex.Extract(patientWithNames(5000))
	if !errors.Is(err, store.ErrTooManyIndexRows) || !strings.Contains(err.Error(), "2000") {
		t.Fatalf("5000 names: %v", err)
	}
	if n := indexLens(&ix).total(); n != 0 {
		t.Errorf("%d rows returned with the error", n)
	}
	// The bound holds within one parameter's values: its loop stops about
	// a thousand values past it instead of emitting all 200,000.
	var rows int
	ex.onPanic = nil
	s := ex.pool.Get().(*state)
	res := patientWithNames(200000)
	plan := ex.plans["Patient"]
	for _, p := range plan.params {
		if p.code != "family" {
			continue
		}
		var idx store.Index
		var js []byte
		s.buf = append(s.buf[:0], item{res, plan.root})
		ex.param(s, &idx, p, res, &js, 2000)
		rows = indexLens(&idx).total()
	}
	if rows == 0 || rows > 2000+2048 {
		t.Errorf("family of 200,000 names under a bound of 2000: %d rows", rows)
	}
}
