package pgtest

import (
	"context"
	"testing"
)

// TestNewEmptyAndOwn: two tests at once get different databases, and a
// database a test filled (tables, another schema) is empty for the next.
func TestNewEmptyAndOwn(t *testing.T) {
	ctx := context.Background()
	var first string
	t.Run("fill", func(t *testing.T) {
		first = New(t)
		other := New(t)
		if other == first {
			t.Fatalf("two live tests share %s", first)
		}
		c, err := connect(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "CREATE TABLE left_over (v int); CREATE SCHEMA sandbox; CREATE TABLE sandbox.t (v int)"); err != nil {
			t.Fatal(err)
		}
	})
	// Whichever pool database the next test gets, it holds nothing.
	for range 2 {
		u := New(t)
		c, err := connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname NOT IN ('pg_catalog', 'information_schema') AND s.nspname NOT LIKE 'pg\\_%'").Scan(&n)
		c.Close(ctx)
		if err != nil || n != 0 {
			t.Fatalf("%s: %d relations left, %v", u, n, err)
		}
	}
}
