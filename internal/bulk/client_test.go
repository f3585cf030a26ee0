package bulk_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/client"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// ndjsonIDs reads the ids of an NDJSON file.
func ndjsonIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// testSDK runs the Go SDK's export against Lapis: system, Patient and
// Group level, resume from the status URL, cancel.
func testSDK(t *testing.T, e *env) {
	ctx := context.Background()
	c, err := client.New(e.Base, client.WithAuth(client.APIKey(e.sys)))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []client.ExportRequest{
		{Types: []string{"Patient"}},
		{Level: "patient", Types: []string{"Patient"}},
		{Level: "group", GroupID: "g1", Types: []string{"Patient"}},
	} {
		job, err := c.Export(ctx, req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		// Resumed from the status URL, as another process would.
		again, err := client.ResumeExport(c, job.URL)
		if err != nil {
			t.Fatal(err)
		}
		m, err := again.Wait(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := again.DownloadAll(ctx, m, dir, nil); err != nil {
			t.Fatal(err)
		}
		exp := []string{"p1", "p2", "p3"}
		if req.Level == "group" {
			exp = exp[:2]
		}
		if got := ndjsonIDs(t, filepath.Join(dir, client.OutputFileName(m.Output[0]))); !slices.Equal(got, exp) {
			t.Errorf("%+v: %v", req, got)
		}
	}
	job, err := c.Export(ctx, client.ExportRequest{Level: "group", GroupID: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := job.Poll(ctx); err == nil {
		t.Error("poll after cancel: no error")
	}
	if _, err := c.Export(ctx, client.ExportRequest{Types: []string{"Nonsense"}}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("bad type: %v", err)
	}
}

// testCLI runs lapis export against Lapis.
func testCLI(t *testing.T, e *env) {
	env := []string{"BULK_KEY=" + e.sys, "XDG_CONFIG_HOME=" + t.TempDir()}
	for _, c := range []struct {
		args []string
		exp  map[string][]string
	}{
		{[]string{"--type", "Patient,Condition"}, want("Patient", []string{"p1", "p2", "p3"}, "Condition", []string{"c1", "c2"})},
		{[]string{"--level", "group", "--group", "g1", "--type", "Observation", "--type-filter", "Observation?category=laboratory"}, want("Observation", []string{"o1", "o3"})},
		{[]string{"--level", "patient", "--type", "Condition"}, want("Condition", []string{"c1", "c2"})},
	} {
		out := filepath.Join(t.TempDir(), "out")
		args := append([]string{"export", "--server", e.Base, "--api-key-env", "BULK_KEY", "--out", out, "--no-progress"}, c.args...)
		r := lapistest.Run(t, env, "", args...)
		if r.Code != 0 {
			t.Fatalf("lapis %s: %d %s", strings.Join(args, " "), r.Code, r.Stderr)
		}
		var sum struct {
			Files []struct{ Type, File string }
		}
		if err := json.Unmarshal([]byte(r.Stdout), &sum); err != nil {
			t.Fatalf("summary %q: %v", r.Stdout, err)
		}
		got := map[string][]string{}
		for _, f := range sum.Files {
			got[f.Type] = append(got[f.Type], ndjsonIDs(t, filepath.Join(out, f.File))...)
		}
		check(t, strings.Join(c.args, " "), got, c.exp)
	}
}

// testGroupCLI makes cohorts with lapis group create (listed ids, a
// search) and exports them.
func testGroupCLI(t *testing.T, e *env) {
	env := []string{"BULK_KEY=" + e.sys, "XDG_CONFIG_HOME=" + t.TempDir()}
	for _, c := range []struct {
		args []string
		exp  []string
	}{
		{[]string{"--patient", "p1,p3"}, []string{"p1", "p3"}},
		{[]string{"--search", "family=Two", "--patient", "p1"}, []string{"p1", "p2"}},
	} {
		args := append([]string{"group", "create", "--server", e.Base, "--api-key-env", "BULK_KEY", "--name", "cohort"}, c.args...)
		r := lapistest.Run(t, env, "", args...)
		var g struct{ ID string }
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &g) != nil || g.ID == "" {
			t.Fatalf("lapis %s: %d %s %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		}
		check(t, "group "+strings.Join(c.args, " "), e.export(t, e.sys, "/Group/"+g.ID+"/$export?_type=Patient"), want("Patient", c.exp))
	}
	if r := lapistest.Run(t, env, "", "group", "create", "--server", e.Base, "--api-key-env", "BULK_KEY", "--name", "x"); r.Code == 0 {
		t.Error("group create without members succeeded")
	}
}
