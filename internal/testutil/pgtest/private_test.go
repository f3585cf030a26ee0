package pgtest

import (
	"context"
	"testing"
)

// TestPrivate: the private server answers, is down after Stop and answers
// again after Start, with the data written before.
func TestPrivate(t *testing.T) {
	p := Private(t)
	ctx := context.Background()
	c, err := connect(ctx, p.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	p.Stop()
	if c, err := connect(ctx, p.URL); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	p.Start()
	c, err = connect(ctx, p.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after restart: %d %v", v, err)
	}
}
