package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"16MiB": 16 << 20, "1024": 1024, "2 KiB": 2048, "1GB": 1e9, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1", "0", "1TiB", "99999999999GiB", "1.5MiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q: expected error", bad)
		}
	}
}

func TestMainErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"nope"}, nil, &out, &errb); code == 0 {
		t.Fatal("unknown command succeeded")
	}
	errb.Reset()
	if code := Main([]string{"serve", "--max-body", "lots"}, nil, &out, &errb); code == 0 || !strings.HasPrefix(errb.String(), "lapis: invalid size") || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("bad size: %d %q", code, errb.String())
	}
	out.Reset()
	if code := Main([]string{"version"}, nil, &out, &errb); code != 0 || out.String() != "lapis "+Version+"\n" {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"--help"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "serve") {
		t.Fatalf("help: %d %q", code, out.String())
	}
}

func TestDevNoAuthNeverRemote(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"serve", "--dev-no-auth", "--allow-remote", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, nil, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--dev-no-auth cannot be combined with --allow-remote") {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
}
