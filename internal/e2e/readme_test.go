package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// The README test runs the README's shell examples as written.
//
// Marker convention: every ```sh (or ```bash) block of README.md is run,
// in order, in one bash process (so B, KEY, ID… set by one block are seen
// by the next), unless the line just before its opening fence is an HTML
// comment starting with "<!-- not-run" and giving the reason, e.g.
//
//	<!-- not-run: needs TLS certificates -->
//	```sh
//
// Blocks that need a browser, a remote server, TLS certificates, Redis or
// values only a person can supply (an authorization code, a client
// secret) carry that marker, as do synopses and transcripts. Blocks in
// another language (```go, ```json, ```text) are never run.
//
// The harness changes only what a test must: the server it starts itself
// listens on a free port, so http://127.0.0.1:8080 is rewritten to its
// address; HOME is a fresh directory, so the default data directory
// (~/.local/share/lapis, shared by the server and the admin commands) is
// fresh, and GOPATH with it (go install writes nowhere else); the server's
// log is appended to ~/lapis.log, as "lapis serve 2>>~/lapis.log" would
// (the portal's development-mode emails, with their links, are there);
// and curl is
// wrapped to fail on an HTTP error (--fail-with-body) unless the command
// asks for the status itself (-w) or already passes -f/--fail. A curl
// that prints its status (-w '%{http_code}\n') with the expected status
// in a trailing comment ("# 410") is checked: that status must be printed.
const (
	readmeNotRun   = "<!-- not-run"
	readmeAddr     = "http://127.0.0.1:8080"
	readmeTimeout  = 3 * time.Minute
	readmeCurlWrap = `curl() {
  local - a
  set +x
  for a in "$@"; do
    case "$a" in
      -w|--write-out|-f|--fail|--fail-with-body|-[a-zA-Z]*f*) command curl "$@"; return;;
    esac
  done
  command curl --fail-with-body "$@"
}
`
)

// readmeBlock is one fenced shell block of the README.
type readmeBlock struct {
	line   int // of the opening fence, 1-based
	text   string
	notRun bool
}

// readmeBlocks returns the README's ```sh and ```bash blocks in order.
func readmeBlocks(t *testing.T, readme string) []readmeBlock {
	t.Helper()
	var (
		blocks []readmeBlock
		cur    *readmeBlock
		prev   string // the last line before the current one
		fence  bool   // inside a fence of another language
	)
	sc := bufio.NewScanner(strings.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case fence && strings.HasPrefix(strings.TrimSpace(line), "```"):
			fence = false
		case fence:
		case line == "```sh" || line == "```bash":
			cur = &readmeBlock{line: n, notRun: strings.HasPrefix(strings.TrimSpace(prev), readmeNotRun)}
		case strings.HasPrefix(line, "```"):
			fence = true
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil || fence {
		t.Fatal("README.md: a code block is not closed")
	}
	return blocks
}

// TestREADME runs the README's runnable shell blocks, top to bottom, in
// one bash process against a fresh lapis serve on SQLite: every command
// must succeed and no curl may get an HTTP error.
func TestREADME(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not found")
	}
	shareddata.Dir(t, "data", "synthea") // the quick start imports it
	root := shareddata.Root()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("set -euxo pipefail\n" + readmeCurlWrap)
	run := 0
	var wantStatus []string // statuses the README says its -w curls print, in order
	for _, b := range readmeBlocks(t, string(readme)) {
		if b.notRun {
			continue
		}
		for i, line := range strings.Split(b.text, "\n") {
			cmd, comment, _ := strings.Cut(line, " # ")
			// A placeholder (…) in a runnable command cannot work.
			if strings.Contains(cmd, "…") {
				t.Errorf("README.md:%d: a runnable block has a … placeholder; fill it in or mark the block %q", b.line+1+i, readmeNotRun+": reason -->")
			}
			if strings.Contains(cmd, "%{http_code}") {
				if f := strings.Fields(comment); len(f) > 0 && len(f[0]) == 3 && f[0] >= "100" && f[0] <= "599" {
					wantStatus = append(wantStatus, f[0])
				}
			}
		}
		run++
		script.WriteString("# README.md:" + strconv.Itoa(b.line) + "\n" + b.text)
	}
	if run < 2 {
		t.Fatalf("README.md: %d runnable shell blocks, want the quick start and the FHIR API examples", run)
	}
	if t.Failed() {
		return
	}

	goEnv := func(name string) string {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"GOPATH=" + filepath.Join(home, "go"),
		// The build and module caches stay shared: nothing is downloaded
		// or rebuilt that the test's own build did not already need.
		"GOCACHE=" + goEnv("GOCACHE"),
		"GOMODCACHE=" + goEnv("GOMODCACHE"),
		"GOENV=" + goEnv("GOENV"),
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME" || k == "GOPATH" || k == "GOBIN" || k == "GOCACHE" || k == "GOMODCACHE" || k == "GOENV",
			strings.HasPrefix(k, "LAPIS_"), strings.HasPrefix(k, "XDG_"):
		default:
			env = append(env, kv)
		}
	}
	// The quick start's go install finds the binary the harness built
	// already in GOPATH/bin: the same build of the same tree, so go
	// install checks it is up to date instead of linking it again (a
	// link costs seconds of CPU). go install still runs and still
	// rebuilds anything that is not.
	preinstall(t, lapistest.Binary(t), filepath.Join(home, "go", "bin", "lapis"))
	s := lapistest.Start(t, lapistest.Options{DataDir: filepath.Join(home, ".local", "share", "lapis"), LogFile: filepath.Join(home, "lapis.log")})
	code := strings.ReplaceAll(script.String(), readmeAddr, s.Origin)

	ctx, cancel := context.WithTimeout(context.Background(), readmeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", code)
	cmd.Dir = root // the README's commands run from the repository root
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README shell blocks failed: %v\n%s", err, tail(string(out), 8000))
	}
	// The statuses printed alone on a line, in order, must include the
	// README's expected ones.
	rest := wantStatus
	for _, line := range strings.Split(string(out), "\n") {
		if len(rest) > 0 && line == rest[0] {
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		t.Errorf("README: expected HTTP statuses %v not printed (all expected: %v)\n%s", rest, wantStatus, tail(string(out), 8000))
	}
	if testing.Verbose() {
		t.Logf("README shell blocks:\n%s", tail(string(out), 4000))
	}
}

// preinstall copies the executable bin to dst (a copy, not a link, so
// that whatever go install does to dst leaves bin alone).
func preinstall(t *testing.T, bin, dst string) {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = os.WriteFile(dst, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
