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
//
// With -mode real (real.go) it instead starts an empty server with the
// default configuration (audit trail and rate limits on), loads the
// bundles over HTTP as transactions (4 workers, a system/*.cruds API key)
// and, without a restart, measures read by id and every search shape at 8
// connections beside a bare net/http handler measured in the same run:
//
//	go run ./cmd/lapis-bench -mode real [-duration 5s] [-bundles N] [-json] [-database URL] [-only REGEXP] [-cpuprofile PREFIX]
//
// Each shape's row gives the 200 answers slower than 100 ms, the
// server's CPU time per 200 answer and, on PostgreSQL (running on this
// machine), the database backends' (cpu.go).
// -only keeps the shapes whose name matches; -cpuprofile has the server
// write a CPU profile per phase (ingest, then each shape) for go tool
// pprof, through LAPIS_CPUPROFILE (cmd/lapis/profile.go). To catch a rare
// stall, LAPIS_BENCH_QUIT_AFTER=1s makes the first request of a measured
// shape without an answer after that long send SIGQUIT to the server (its
// goroutine dump, then exit), and LAPIS_BENCH_SERVER_LOG=FILE keeps the
// server's output (slow.go).
//
// With -mode export (export.go) it imports the bundles -replicas times and
// measures a system-level Bulk Data $export twice, while other clients
// read by id (8, or -c) and then alone: resources/s, the server's peak
// memory over idle, and the readers' latency:
//
//	go run ./cmd/lapis-bench -mode export [-replicas 7] [-database URL] [-c 8] [-cpuprofile PREFIX]
//
// -c 0 runs the export alone only. -dbname NAME (with -database) keeps the
// imported database, so that a later run with -skip-import -datadir DIR
// -dbname NAME measures the same data without importing it again.
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
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

func main() {
	var (
		dataDir  = flag.String("data", "../shared/data/synthea", "directory of Synthea transaction Bundles to import")
		database = flag.String("database", "", "PostgreSQL admin URL; a fresh database is created beside it (empty = SQLite)")
		conns    = flag.Int("c", 32, "concurrent connections")
		duration = flag.Duration("d", 10*time.Second, "duration of each load phase")
		skip     = flag.Bool("skip-import", false, "skip the import phase (then -datadir must hold data)")
		keep     = flag.String("datadir", "", "data directory to use (default: a temporary one)")
		loader   = flag.String("loader", "auto", "load generator: wrk (Debian package wrk), go, or auto (wrk when installed)")
		auditCmp = flag.Bool("audit", false, "only compare read-by-id latency with the audit trail on and off (audit.go)")
		mode     = flag.String("mode", "", "real: load the bundles over HTTP into a default-configured server and measure every search shape (real.go); export: a system $export of the bundles imported -replicas times (export.go); cluster: reads and Observation?patient&code through HAProxy in front of 1, 2 and 3 instances vs direct (cluster.go; needs -database and haproxy)")
		replicas = flag.Int("replicas", 7, "-mode export: import the bundles this many times (about 15,000 resources each)")
		bundles  = flag.Int("bundles", 0, "-mode real: load only the first N bundles (0 = all)")
		workers  = flag.Int("workers", 4, "-mode real: parallel transactions while loading")
		jsonOut  = flag.Bool("json", false, "-mode real: print one JSON object instead of the table")
		cpuProf  = flag.String("cpuprofile", "", "-mode real: write the server's CPU profile of each phase to PREFIX.PID.N (N: 0 ingest, 1 parameters and bare handler, then one per shape; the phases are listed on stderr); -mode export: N 1 is the export beside the readers, 3 the export alone (with -c 0: 1 is the only export); read them with go tool pprof")
		patients = flag.Int("patients", 0, "-mode export: export the compartments of this many patients (at most 200; a POST Patient/$export naming them) instead of the whole system")
		binPath  = flag.String("bin", "", "use this lapis binary instead of building ./cmd/lapis (e.g. the build of another commit, for an A/B comparison on the same data)")
		dbName   = flag.String("dbname", "", "with -database: use (and keep) this database beside it, created when missing, instead of a fresh one dropped afterwards; with -skip-import and -datadir a later run reuses the data")
		only     = flag.String("only", "", "-mode real: measure only the shapes whose name matches this regular expression (e.g. '^read' for read by id)")
	)
	flag.DurationVar(duration, "duration", 10*time.Second, "same as -d")
	flag.Parse()
	var real *realOptions
	var exp *exportOptions
	switch *mode {
	case "":
	case "export":
		exp = &exportOptions{replicas: *replicas, conns: 8, skip: *skip, cpuProfile: *cpuProf, patients: *patients}
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "c" {
				exp.conns = *conns
			}
		})
	case "cluster":
		clusterMode = true
	case "real":
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		real = &realOptions{conns: *conns, workers: *workers, dur: *duration, jsonOut: *jsonOut, cpuProfile: *cpuProf}
		if *only != "" {
			re, err := regexp.Compile(*only)
			if err != nil {
				fmt.Fprintln(os.Stderr, "lapis-bench: -only:", err)
				os.Exit(2)
			}
			real.only = re
		}
		if *skip {
			fmt.Fprintln(os.Stderr, "lapis-bench: -skip-import does not apply to -mode real: it always starts an empty server and loads the bundles over HTTP")
			os.Exit(2)
		}
		if !set["c"] {
			real.conns = 8
		}
		if !set["d"] && !set["duration"] {
			real.dur = 5 * time.Second
		}
		if *bundles > 0 {
			real.files = make([]string, *bundles)
		}
		*loader = "go"
	default:
		fmt.Fprintf(os.Stderr, "lapis-bench: unknown -mode %q (want real, export or cluster)\n", *mode)
		os.Exit(2)
	}
	useWrk := *loader == "wrk"
	if *loader == "auto" {
		_, err := exec.LookPath("wrk")
		useWrk = err == nil
	}
	if useWrk {
		load = wrkLoad
	}
	if err := run(*dataDir, *database, *dbName, *binPath, *keep, *conns, *duration, *skip, *auditCmp, real, exp); err != nil {
		fmt.Fprintln(os.Stderr, "lapis-bench:", err)
		os.Exit(1)
	}
}

func run(dataDir, adminURL, dbName, binPath, keepDir string, conns int, dur time.Duration, skipImport bool, auditCmp bool, real *realOptions, exp *exportOptions) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "lapis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := binPath
	if bin == "" {
		bin = filepath.Join(work, "lapis")
		build := exec.Command("go", "build", "-o", bin, "./cmd/lapis")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build: %w", err)
		}
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
		if dbName != "" {
			if !regexp.MustCompile(`^[a-z_][a-z0-9_]*$`).MatchString(dbName) {
				return fmt.Errorf("-dbname %q: want lower-case letters, digits and _", dbName)
			}
			name = dbName
		}
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
				return err
			}
		}
		if dbName == "" {
			defer func() {
				_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			}()
		}
		u, _ := url.Parse(adminURL)
		u.Path = "/" + name
		dbURL = u.String()
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "*.json"))
	if len(files) == 0 && !skipImport {
		return fmt.Errorf("no bundles in %s", dataDir)
	}
	if exp != nil {
		return runExport(bin, dir, dbURL, dialect, files, *exp)
	}
	if real != nil {
		if n := len(real.files); n > 0 && n < len(files) {
			files = files[:n]
		}
		real.bin, real.dir, real.dbURL, real.dialect, real.files = bin, dir, dbURL, dialect, files
		return runReal(*real)
	}
	fmt.Printf("# lapis-bench  dialect=%s  cpus=%d  connections=%d  duration=%s\n", dialect, runtime.NumCPU(), conns, dur)

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

	// An API key for the load (the FHIR API requires a credential).
	key, err := benchKey(bin, dir, dbURL)
	if err != nil {
		return err
	}
	// The full gateway: rate limits evaluated on every request (limits high
	// enough never to refuse the load) and the audit trail on (defaults).
	base, stop, err := startServe(bin, dir, dbURL, benchLimits()...)
	if err != nil {
		return err
	}
	defer stop()
	client := &http.Client{Transport: &keyTransport{key: key, base: &http.Transport{MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: conns}}}

	patients, err := ids(client, base+"/Patient?_count=200&_elements=id")
	if err != nil || len(patients) == 0 {
		return fmt.Errorf("no patients found: %v", err)
	}
	// Read by id.
	var urls []string
	for _, p := range patients {
		urls = append(urls, base+"/Patient/"+p)
	}
	if auditCmp {
		return compareAudit(bin, dir, dbURL, key, patients, conns, dur)
	}
	if clusterMode {
		stop()
		return runCluster(bin, dir, dbURL, key, conns, dur)
	}
	report("read Patient/{id}", load(client, urls, conns, dur))
	// The two searches. The Synthea set has no heart-rate (8867-4)
	// observations, so the same search is also run with body weight
	// (29463-7), which every patient has.
	var s1, s1w, s2 []string
	for _, p := range patients {
		s1 = append(s1, base+"/Observation?patient="+p+"&code="+url.QueryEscape("http://loinc.org|8867-4"))
		s1w = append(s1w, base+"/Observation?patient="+p+"&code="+url.QueryEscape("http://loinc.org|29463-7"))
		s2 = append(s2, base+"/Observation?patient="+p+"&category=laboratory&date=ge2015-01-01")
	}
	for _, c := range []int{conns, 8, 1} {
		report(fmt.Sprintf("patient&code=8867-4 (%d conns)", c), load(client, s1, c, dur))
		report(fmt.Sprintf("patient&code=29463-7 (%d conns)", c), load(client, s1w, c, dur))
		report(fmt.Sprintf("patient&category&date (%d conns)", c), load(client, s2, c, dur))
	}

	// Security overhead: the same reads through this server (API key,
	// authentication + scope check), through a second server on the same
	// data with --dev-no-auth, and through a bare net/http handler serving
	// the bytes of one Patient from memory.
	fmt.Println("# security overhead, read by id")
	// Each variant runs on a fresh server, the audited one last: the main
	// server's audit copy (the backlog of the phases above) and an audited
	// server's own copy would otherwise compete with the other variants
	// for the CPU.
	body, err := get(client, urls[0])
	if err != nil {
		return err
	}
	stop()
	rebase := func(newBase string) []string {
		var out []string
		for _, u := range urls {
			out = append(out, strings.Replace(u, base, newBase, 1))
		}
		return out
	}
	plain := &http.Client{Transport: &keyTransport{base: &http.Transport{MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: conns}}}
	for _, v := range []struct {
		name  string
		c     *http.Client
		extra []string
	}{
		{"secured + rate limits, audit off (X-API-Key, scope-checked)", client, append(benchLimits(), "--no-audit")},
		{"security off (--dev-no-auth, audit off)", plain, []string{"--dev-no-auth", "--no-audit"}},
		{"secured + rate limits + audit", client, benchLimits()},
	} {
		vBase, vStop, err := startServe(bin, dir, dbURL, v.extra...)
		if err != nil {
			return err
		}
		report(v.name, load(v.c, rebase(vBase), conns, dur))
		vStop()
	}
	bareAddr, stopBare, err := serveBare(body)
	if err != nil {
		return err
	}
	defer stopBare()
	var bareURLs []string
	for _, u := range urls {
		bareURLs = append(bareURLs, strings.Replace(u, base, "http://"+bareAddr+"/fhir", 1))
	}
	report("bare net/http handler, same bytes", load(plain, bareURLs, conns, dur))
	return nil
}

// benchKey creates a system/*.rs API key in the database and returns it.
func benchKey(bin, dir, dbURL string) (string, error) {
	out, err := exec.Command(bin, "apikey", "create", "--data-dir", dir, "--database", dbURL, "--name", "bench", "--scope", "system/*.rs", "--json").Output()
	if err != nil {
		return "", fmt.Errorf("apikey create: %w", err)
	}
	var key struct{ Key string }
	if err := json.Unmarshal(out, &key); err != nil || key.Key == "" {
		return "", fmt.Errorf("apikey create output %q: %v", out, err)
	}
	return key.Key, nil
}

// get returns the body of one GET.
func get(c *http.Client, u string) ([]byte, error) {
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// benchLimits keep the rate limiter evaluating every request without ever
// refusing the benchmark's load.
func benchLimits() []string {
	return []string{"--rate-limit-client", "1000000/s", "--rate-limit-patient", "1000000/s"}
}

// startServe starts "lapis serve" on a loopback port it binds itself and
// returns its FHIR base and a function that stops it (printing the
// server's error lines).
func startServe(bin, dir, dbURL string, extra ...string) (string, func(), error) {
	base, stop, _, err := startServeEnv(bin, dir, dbURL, nil, extra...)
	return base, stop, err
}

// startServeEnv is startServe with env added to the server's environment;
// it also returns the server's process id.
func startServeEnv(bin, dir, dbURL string, env []string, extra ...string) (string, func(), int, error) {
	// Info level: the "lapis serving" line tells the bound address.
	srv, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: dir, Database: dbURL, Env: env, LogFile: os.Getenv("LAPIS_BENCH_SERVER_LOG"),
		Args: append([]string{"--log-level", "info"}, extra...)})
	if err != nil {
		return "", nil, 0, err
	}
	stop := func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "lapis-bench:", err)
		}
		for _, line := range strings.Split(srv.Logs(), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"status":503`) {
				fmt.Fprintln(os.Stderr, line)
			}
		}
	}
	return srv.Base, stop, srv.PID(), nil
}

// keyTransport adds the API key (when set) to every request.
type keyTransport struct {
	key  string
	base http.RoundTripper
}

// keysTransport adds one of several API keys to each request, in turn:
// several clients sharing the connections.
type keysTransport struct {
	keys []string
	next atomic.Uint64
	base http.RoundTripper
}

func (k *keysTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-API-Key", k.keys[(k.next.Add(1)-1)%uint64(len(k.keys))])
	return k.base.RoundTrip(r)
}

func (k *keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if k.key == "" {
		return k.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("X-API-Key", k.key)
	return k.base.RoundTrip(r)
}

type result struct {
	wrk       *wrkResult
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	okLat     []time.Duration // latencies of the 200 answers
	codes     map[int]int     // answers by status (goLoad)
	transport int             // requests that got no answer (goLoad)
	firstErr  string          // the first of those errors
}

// clusterMode is -mode cluster (cluster.go).
var clusterMode bool

// load runs a load phase; goLoad by default, wrkLoad when wrk is used.
var load = goLoad

func goLoad(client *http.Client, urls []string, conns int, dur time.Duration) result {
	var mu sync.Mutex
	res := result{codes: map[int]int{}}
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			var lat, okLat []time.Duration
			codes := map[int]int{}
			errs := 0
			for time.Now().Before(deadline) {
				u := urls[r.IntN(len(urls))]
				t := time.Now()
				done := onSlow(u)
				resp, err := client.Get(u)
				if err != nil {
					done()
					errs++
					mu.Lock()
					res.transport++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done()
				el := time.Since(t)
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					// As a real client does (the SDK, fhirclient): wait as
					// told before the next request. A load that ignored it
					// would measure the server answering a flood of 429s.
					backOff(resp.Header.Get("Retry-After"), deadline)
				}
				if resp.StatusCode != 200 {
					errs++
				} else {
					okLat = append(okLat, el)
				}
				lat = append(lat, el)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.okLat = append(res.okLat, okLat...)
			for c, n := range codes {
				res.codes[c] += n
			}
			res.errors += errs
			mu.Unlock()
		}(uint64(i))
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.n = len(res.lat)
	return res
}

// backOff sleeps for a Retry-After of delta-seconds (RFC 9110 §10.2.3),
// at most until deadline; a missing or unreadable value waits 100 ms.
func backOff(retryAfter string, deadline time.Time) {
	wait := 100 * time.Millisecond
	if n, err := strconv.Atoi(retryAfter); err == nil && n >= 0 {
		wait = time.Duration(n) * time.Second
	}
	time.Sleep(min(wait, time.Until(deadline)))
}

func report(name string, r result) {
	if r.wrk != nil {
		fmt.Printf("%-42s %8.0f req/s  p50 %7.2fms  p99 %7.2fms  (%d requests, %d errors; wrk)\n", name, r.wrk.rps, r.wrk.p50, r.wrk.p99, r.n, r.errors)
		return
	}
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

type wrkResult struct{ rps, p50, p99 float64 }

// wrkLoad drives the phase with wrk (a C load generator, so the server keeps
// more of the 2 cores than with the Go generator), requesting the URLs in
// random order through a Lua script.
func wrkLoad(client *http.Client, urls []string, conns int, dur time.Duration) result {
	u, _ := url.Parse(urls[0])
	var lua strings.Builder
	if kt, ok := client.Transport.(*keyTransport); ok && kt.key != "" {
		fmt.Fprintf(&lua, "wrk.headers[\"X-API-Key\"] = %q\n", kt.key)
	}
	lua.WriteString("paths = {")
	for _, x := range urls {
		p, _ := url.Parse(x)
		fmt.Fprintf(&lua, "%q,", p.RequestURI())
	}
	lua.WriteString("}\nrequest = function() return wrk.format(\"GET\", paths[math.random(#paths)]) end\n")
	lua.WriteString(`done = function(summary, latency, requests)
  io.write(string.format("LAPIS %d %d %d %f %f\\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
`)
	f, err := os.CreateTemp("", "lapis-bench-*.lua")
	if err != nil {
		return result{errors: 1}
	}
	defer os.Remove(f.Name())
	f.WriteString(lua.String())
	f.Close()
	threads := min(conns, 2)
	out, err := exec.Command("wrk", "-t", fmt.Sprint(threads), "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%ds", int(dur.Seconds())), "-s", f.Name(), u.Scheme+"://"+u.Host).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wrk:", err)
		return result{errors: 1}
	}
	for _, line := range strings.Split(string(out), "\n") {
		var n, errs, durUS int64
		var p50, p99 float64
		if _, err := fmt.Sscanf(line, "LAPIS %d %d %d %f %f", &n, &errs, &durUS, &p50, &p99); err == nil {
			return result{n: int(n), errors: int(errs), wrk: &wrkResult{rps: float64(n) / (float64(durUS) / 1e6), p50: p50 / 1000, p99: p99 / 1000}}
		}
	}
	return result{errors: 1}
}

// serveBare serves body on a loopback port with a bare net/http handler
// (the baseline every figure is set beside) and returns its address.
func serveBare(body []byte) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
		_, _ = w.Write(body)
	})}
	go bare.Serve(ln)
	return ln.Addr().String(), func() { bare.Close() }, nil
}
