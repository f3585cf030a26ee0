package sqlite

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestAnonymous(t *testing.T) {
	many := func(n int) []any {
		a := make([]any, n)
		for i := range a {
			a[i] = fmt.Sprint("v", i+1)
		}
		return a
	}
	args := many(20)
	var sb strings.Builder
	// Placeholders out of order, one twice, others in a literal and an
	// identifier that must stay as they are.
	sb.WriteString(`SELECT '?3', "a?4" FROM t WHERE x = ?20 AND y IN (?2, ?1) AND z = ?20`)
	for i := 3; i <= 19; i++ {
		fmt.Fprintf(&sb, " AND c%d = ?%d", i, i)
	}
	q, out := anonymous(sb.String(), args)
	if strings.Contains(q, "?1") || !strings.HasPrefix(q, `SELECT '?3', "a?4" FROM t WHERE x = ? AND y IN (?, ?) AND z = ?`) {
		t.Fatalf("rewritten: %s", q)
	}
	want := []any{"v20", "v2", "v1", "v20"}
	for i := 3; i <= 19; i++ {
		want = append(want, fmt.Sprint("v", i))
	}
	if !reflect.DeepEqual(out, want) || strings.Count(q, "?") != len(want)+2 {
		t.Fatalf("args %v, want %v", out, want)
	}

	// Left alone: few arguments, a bare ?, a number out of range.
	for _, c := range []struct {
		q    string
		args []any
	}{
		{"SELECT ?2, ?1", many(2)},
		{"SELECT ?, ?1" + strings.Repeat(", ?1", 20), many(20)},
		{"SELECT ?21" + strings.Repeat(", ?1", 20), many(20)},
		{"SELECT 1", many(20)},
	} {
		if q, out := anonymous(c.q, c.args); q != c.q || !reflect.DeepEqual(out, c.args) {
			t.Errorf("%q rewritten as %q %v", c.q, q, out)
		}
	}
}

func BenchmarkAnonymous(b *testing.B) {
	args := make([]any, 300)
	var sb strings.Builder
	sb.WriteString("SELECT 1 FROM t WHERE 1=1")
	for i := range args {
		args[i] = i
		fmt.Fprintf(&sb, " AND c%d = ?%d", i, i+1)
	}
	q := sb.String()
	for b.Loop() {
		anonymous(q, args)
	}
}
