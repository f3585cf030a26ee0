package cli

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// parseResult is what a parse gives a command: the command chosen, the
// grammar filled in, the error, the exit code and what kong printed.
type parseResult struct {
	command string
	grammar grammar
	err     string
	exit    int
	out     string
}

func parseWith(p *parser, args []string) parseResult {
	var out bytes.Buffer
	p.k.Stdout, p.k.Stderr = &out, &out
	kctx, err := p.k.Parse(args)
	r := parseResult{grammar: *p.g, exit: p.exit, out: out.String()}
	if kctx != nil {
		r.command = kctx.Command()
	}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// TestParserReuse: a parser that parsed other command lines before parses
// each command line as a parser built for it alone does (the grammar, the
// command, errors for missing required flags, negated flags, help).
func TestParserReuse(t *testing.T) {
	t.Parallel()
	lines := [][]string{
		{"--help"},
		{"apikey", "create", "--name", "ci", "--scope", "system/*.read", "--allow-ip", "10.0.0.0/8", "--json"},
		{"apikey", "create", "--scope", "system/*.read"},
		{"serve", "--no-sandbox", "--no-sandbox-load", "--addr", "127.0.0.1:1"},
		{"serve"},
		{"client", "create", "--name", "x", "--scope", "openid", "--jwks-file", "parser_test.go", "--jwks-uri", "https://example.org/jwks"},
		{"search", "Patient", "name=smith", "_count=2"},
		{"search", "Patient"},
		{"apikey"},
		{"no-such-command"},
		{"apikey", "create", "--help"},
		{"version"},
	}
	reused, err := newParser()
	if err != nil {
		t.Fatal(err)
	}
	// Forward, then backward: each line follows both its neighbours.
	order := append(slices.Clone(lines), lines[:len(lines)-1]...)
	slices.Reverse(order[len(lines):])
	for i, args := range order {
		fresh, err := newParser()
		if err != nil {
			t.Fatal(err)
		}
		want := parseWith(fresh, args)
		if i > 0 {
			reused.reset()
		}
		got := parseWith(reused, args)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q after %d parses:\n got %s\nwant %s", args, i, describe(got), describe(want))
		}
	}
}

func describe(r parseResult) string {
	return fmt.Sprintf("command %q err %q exit %d out %d bytes grammar %+v", r.command, r.err, r.exit, len(r.out), r.grammar)
}
