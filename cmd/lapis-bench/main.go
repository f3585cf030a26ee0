// Command lapis-bench measures Lapis on this machine and prints the figures
// the FHIR-store issue asks for: import throughput and peak memory, read-by-id
// throughput and latency under 32 connections, and the latency of two typical
// Observation searches with all the Synthea data loaded.
//
//	go run ./cmd/lapis-bench                       # SQLite in a temp dir
//	go run ./cmd/lapis-bench -database postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//
// With -database it creates a fresh database next to the given one and drops
// it afterwards. It builds the lapis binary, imports ../shared/data/synthea
// (or -data), starts "lapis serve" on a free loopback port and loads it. It
// sends traffic only to that loopback server, for a bounded time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	var (
		dataDir  = flag.String("data", "../shared/data/synthea", "directory of Synthea transaction Bundles to import")
		database = flag.String("database", "", "PostgreSQL admin URL; a fresh database is created beside it (empty = SQLite)")
		conns    = flag.Int("c", 32, "concurrent connections")
		duration = flag.Duration("d", 10*time.Second, "duration of each load phase")
		skip     = flag.Bool("skip-import", false, "skip the import phase (then -datadir must hold data)")
		keep     = flag.String("datadir", "", "data directory to use (default: a temporary one)")
	)
	flag.Parse()
	if err := run(*dataDir, *database, *keep, *conns, *duration, *skip); err != nil {
		fmt.Fprintln(os.Stderr, "lapis-bench:", err)
		os.Exit(1)
	}
}

func run(dataDir, adminURL, keepDir string, conns int, dur time.Duration, skipImport bool) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "lapis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "lapis")
	build := exec.Command("go", "build", "-o", bin, "./cmd/lapis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	dir := keepDir
	if dir == "" {
		dir = filepath.Join(work, "data")
	}
	dbURL := ""
	dialect := "sqlite"
	if adminURL != "" {
		dialect = "postgres"
		name := fmt.Sprintf("lapis_bench_%d", time.Now().UnixNano())
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			return err
		}
		defer func() {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(context.Background())
		}()
		u, _ := url.Parse(adminURL)
		u.Path = "/" + name
		dbURL = u.String()
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "*.json"))
	if len(files) == 0 && !skipImport {
		return fmt.Errorf("no bundles in %s", dataDir)
	}
	fmt.Printf("# lapis-bench  dialect=%s  cpus=%d  connections=%d  duration=%s\n", dialect, numCPU(), conns, dur)

	if !skipImport {
		args := append([]string{"import", "--data-dir", dir, "--database", dbURL, "--quiet", "--json"}, files...)
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		start := time.Now()
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		el := time.Since(start)
		var rep struct {
			Resources int `json:"resources"`
			Failed    int `json:"failed"`
		}
		_ = json.Unmarshal(out, &rep)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		fmt.Printf("import: %d resources (%d failed) in %.2fs = %.0f resources/s, peak RSS %.0f MB\n",
			rep.Resources, rep.Failed, el.Seconds(), float64(rep.Resources)/el.Seconds(), float64(ru.Maxrss)/1024)
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := exec.Command(bin, "serve", "--addr", addr, "--data-dir", dir, "--database", dbURL, "--log-level", "warn")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	base := "http://" + addr + "/fhir"
	if err := waitUp(base); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: conns}}

	patients, err := ids(client, base+"/Patient?_count=200&_elements=id")
	if err != nil || len(patients) == 0 {
		return fmt.Errorf("no patients found: %v", err)
	}
	// Read by id.
	var urls []string
	for _, p := range patients {
		urls = append(urls, base+"/Patient/"+p)
	}
	report("read Patient/{id}", load(client, urls, conns, dur))
	// The two searches.
	var s1, s2 []string
	for _, p := range patients {
		s1 = append(s1, base+"/Observation?patient="+p+"&code="+url.QueryEscape("http://loinc.org|8867-4"))
		s2 = append(s2, base+"/Observation?patient="+p+"&category=laboratory&date=ge2015-01-01")
	}
	report("search Observation?patient&code", load(client, s1, conns, dur))
	report("search Observation?patient&category&date", load(client, s2, conns, dur))
	// Same searches one at a time (latency without queueing).
	report("search patient&code (1 conn)", load(client, s1, 1, dur/2))
	report("search patient&category&date (1 conn)", load(client, s2, 1, dur/2))
	return nil
}

type result struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
}

func load(client *http.Client, urls []string, conns int, dur time.Duration) result {
	var mu sync.Mutex
	var res result
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			var lat []time.Duration
			errs := 0
			for time.Now().Before(deadline) {
				u := urls[r.IntN(len(urls))]
				t := time.Now()
				resp, err := client.Get(u)
				if err != nil {
					errs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs++
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			mu.Unlock()
		}(uint64(i))
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.n = len(res.lat)
	return res
}

func report(name string, r result) {
	slices.Sort(r.lat)
	pct := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[int(float64(len(r.lat)-1)*p)]
	}
	fmt.Printf("%-42s %8.0f req/s  p50 %7.2fms  p99 %7.2fms  (%d requests, %d errors)\n", name,
		float64(r.n)/r.elapsed.Seconds(), ms(pct(0.50)), ms(pct(0.99)), r.n, r.errors)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ids(client *http.Client, u string) ([]string, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b struct {
		Entry []struct {
			Resource struct {
				ID string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource.ID)
	}
	return out, nil
}

func waitUp(base string) error {
	for i := 0; i < 100; i++ {
		resp, err := http.Get(base + "/metadata")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server did not start")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
