package sqlite

import (
	"context"
	"database/sql"
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

// A text of several statements keeps its numbered placeholders: the
// driver binds each statement's anonymous parameters from the first
// argument again, so the second statement's ? would take the first
// statement's values.
func TestAnonymousSeveralStatements(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE a (v TEXT); CREATE TABLE b (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	args := make([]any, 16)
	var first []string
	for i := range args {
		args[i] = fmt.Sprint("v", i+1)
		if i < 15 {
			first = append(first, fmt.Sprintf("(?%d)", i+1))
		}
	}
	q := "INSERT INTO a (v) VALUES " + strings.Join(first, ", ") + "; INSERT INTO b (v) VALUES (?16)"
	q, out := anonymous(q, args)
	if _, err := db.ExecContext(ctx, q, out...); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT v FROM b").Scan(&v); err != nil || v != "v16" {
		t.Errorf("second statement bound %q (%v), want v16", v, err)
	}
	for _, q := range []string{"SELECT ?1" + strings.Repeat(", ?1", 20) + ";", "SELECT ';'" + strings.Repeat(", ?1", 20)} {
		if got, _ := anonymous(q, args); got == q {
			t.Errorf("%q: one statement left numbered", q)
		}
	}
}
