package importer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/app"
	"github.com/lapis-health/lapis/internal/testutil/apptest"
)

func openApp(tb testing.TB) *app.App {
	tb.Helper()
	return apptest.Open(tb, "sqlite", nil)
}

func synthea(tb testing.TB, n int) []string {
	_, file, _, _ := runtime.Caller(0)
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "data", "synthea", "*.json"))
	sort.Strings(files)
	if len(files) < n {
		tb.Skip("Synthea data not found")
	}
	return files[:n]
}

func TestImportKinds(t *testing.T) {
	a := openApp(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := []string{
		write("collection.json", `{"resourceType":"Bundle","type":"collection","entry":[
			{"resource":{"resourceType":"Patient","id":"c1"}},
			{"resource":{"resourceType":"Patient","id":"c2","gender":"nope"}},
			{"resource":{"resourceType":"Observation","id":"c3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/c1"}}}]}`),
		write("single.json", `{"resourceType":"Patient","id":"s1"}`),
		write("batch.json", `{"resourceType":"Bundle","type":"batch","entry":[
			{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Patient","birthDate":"x"},"request":{"method":"POST","url":"Patient"}}]}`),
		write("lines.ndjson", "{\"resourceType\":\"Patient\",\"id\":\"n1\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"n2\"}\n{broken\n"),
		write("bad.json", `{"resourceType":`),
		write("tx.json", `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Nope"},"request":{"method":"POST","url":"Nope"}}]}`),
	}
	var errs bytes.Buffer
	rep, err := New(a.Service, Options{Errors: &errs, ChunkSize: 2}).Import(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	// ok: c1, c3, s1, batch#1, n1, n2 = 6. failed: c2, batch#2, ndjson line 3, bad.json (file), tx (2 entries).
	if rep.Resources != 6 || rep.Failed != 6 || rep.Files != 6 {
		t.Fatalf("report %+v\n%s", rep, errs.String())
	}
	for _, want := range []string{"collection.json: entry 2", "batch.json: entry 2", "lines.ndjson: line 3", "bad.json: not valid JSON", "tx.json: transaction rejected"} {
		if !strings.Contains(errs.String(), want) {
			t.Errorf("errors lack %q:\n%s", want, errs.String())
		}
	}
	for _, id := range []string{"c1", "s1", "n1", "n2"} {
		if _, err := a.Store.Read(context.Background(), "Patient", id); err != nil {
			t.Errorf("Patient/%s: %v", id, err)
		}
	}
	if _, err := a.Store.Read(context.Background(), "Patient", "c2"); err == nil {
		t.Error("invalid Patient/c2 was stored")
	}
}

func TestImportSynthea(t *testing.T) {
	a := openApp(t)
	var errs bytes.Buffer
	rep, err := New(a.Service, Options{Errors: &errs}).Import(context.Background(), synthea(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Resources < 300 {
		t.Fatalf("report %+v\n%s", rep, errs.String())
	}
}

// BenchmarkImportSynthea imports 10 Synthea bundles (LAPIS_BENCH_FILES
// overrides the number) into a fresh SQLite database.
func BenchmarkImportSynthea(b *testing.B) {
	n := 10
	if v, err := strconv.Atoi(os.Getenv("LAPIS_BENCH_FILES")); err == nil && v > 0 {
		n = v
	}
	files := synthea(b, n)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := openApp(b)
		b.StartTimer()
		rep, err := New(a.Service, Options{}).Import(context.Background(), files)
		if err != nil || rep.Failed != 0 {
			b.Fatal(err, rep)
		}
		b.ReportMetric(rep.PerSecond, "resources/s")
	}
}
