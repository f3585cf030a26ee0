package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// readmeFlagExempt are serve flags the configuration table need not
// list, with the reason.
var readmeFlagExempt = map[string]string{
	"--help": "kong's own",
	"--env":  "an admin-command flag (documented under the admin commands), not a server setting",
}

// TestREADMEConfigFlags checks that the README's configuration table
// (the first column of the table under "## Configuration") names every
// flag "lapis serve --help" lists, and only flags that exist.
func TestREADMEConfigFlags(t *testing.T) {
	t.Parallel()
	out, _, code := run(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	flagRE := regexp.MustCompile(`(?m)^ {2,8}(?:-\w, )?--((?:\[no-\])?[a-z0-9-]+)`)
	help := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
		help["--"+strings.TrimPrefix(m[1], "[no-]")] = true
	}
	if len(help) < 30 {
		t.Fatalf("read only %d flags from serve --help:\n%s", len(help), out)
	}
	readme, err := os.ReadFile(filepath.Join(shareddata.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	table := map[string]bool{}
	cellRE := regexp.MustCompile("`--((?:\\[no-\\])?[a-z0-9-]+)")
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range cellRE.FindAllStringSubmatch(cells[1], -1) {
			table["--"+strings.TrimPrefix(m[1], "[no-]")] = true
		}
	}
	for f := range help {
		if !table[f] && readmeFlagExempt[f] == "" {
			t.Errorf("README configuration table: %s (lapis serve --help) is missing", f)
		}
	}
	for f := range table {
		if !help[f] {
			t.Errorf("README configuration table: %s is not a flag of lapis serve", f)
		}
	}
}
