package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
)

// realOptions are the parameters of the real-path benchmark (-mode real).
type realOptions struct {
	bin, dir, dbURL, dialect string
	files                    []string
	conns, workers           int
	dur                      time.Duration
	jsonOut                  bool
	// only, when set, keeps the shapes whose name it matches.
	only *regexp.Regexp
	// cpuProfile, when set, is the path prefix of the server's per-phase
	// CPU profiles (LAPIS_CPUPROFILE, cut by SIGUSR1 between phases).
	cpuProfile string
}

// realRow is one measured line of the real-path report.
type realRow struct {
	Name      string  `json:"name"`
	Requests  int     `json:"requests"`
	OK        int     `json:"ok"`
	Throttled int     `json:"throttled_429"`
	Errors    int     `json:"errors"`
	RPS       float64 `json:"ok_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Maxms     float64 `json:"max_ms"`
	// Over100ms counts the 200 answers slower than 100 ms.
	Over100ms int     `json:"over_100ms"`
	BareRatio float64 `json:"x_bare"`
	// CPUus is the lapis server process's CPU time (user + system) per
	// 200 answer, in microseconds (0 when not measured): less sensitive
	// than the rates to the machine's other load.
	CPUus float64 `json:"server_cpu_us_per_ok,omitempty"`
	// DBCPUus is the PostgreSQL backends' CPU time per 200 answer (0 on
	// SQLite, whose work is the server's).
	DBCPUus float64 `json:"database_cpu_us_per_ok,omitempty"`
	// CopyLagS is how far searchable AuditEvents were behind the audit
	// trail at the end of the phase (lapis_audit_copy_lag_seconds; -1 when
	// it could not be read): the part of the trail's cost the copy defers.
	CopyLagS float64 `json:"audit_copy_lag_seconds"`
}

// realReport is the -json output of the real-path benchmark.
type realReport struct {
	Dialect     string    `json:"dialect"`
	CPUs        int       `json:"cpus"`
	Connections int       `json:"connections"`
	Duration    string    `json:"duration"`
	Bundles     int       `json:"bundles"`
	Resources   int       `json:"resources"`
	IngestSecs  float64   `json:"ingest_seconds"`
	IngestRPS   float64   `json:"ingest_resources_per_second"`
	Ingest429   int       `json:"ingest_429"`
	IngestCPUus float64   `json:"ingest_server_cpu_us_per_resource,omitempty"`
	IngestFail  int       `json:"ingest_failed_bundles"`
	Bare        realRow   `json:"bare"`
	Rows        []realRow `json:"rows"`
}

// runReal starts an empty server with the default configuration (audit
// and rate limits on), loads the bundles over HTTP as transactions with a
// system/ credential, picks search parameters from the loaded data through
// the API and measures each search shape, with the bare net/http handler
// measured in the same run as the baseline.
func runReal(o realOptions) error {
	rep := realReport{Dialect: o.dialect, CPUs: runtime.NumCPU(), Connections: o.conns, Duration: o.dur.String(), Bundles: len(o.files)}
	sysKey, err := createKey(o, "bench-system", "system/*.cruds")
	if err != nil {
		return err
	}
	// Default configuration: only the address, data directory and
	// database (lapistest adds --addr 127.0.0.1:0 and --log-level info
	// for the "lapis serving" line).
	var env []string
	if o.cpuProfile != "" {
		env = []string{"LAPIS_CPUPROFILE=" + o.cpuProfile}
	}
	base, stop, pid, err := startServeEnv(o.bin, o.dir, o.dbURL, env)
	if err != nil {
		return err
	}
	defer stop()
	stopWatch := watchSlow(pid)
	defer stopWatch()
	// phase ends the server's current profile window and names the next.
	window := 0
	phase := func(next string) {
		if o.cpuProfile == "" {
			return
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(syscall.SIGUSR1)
		}
		window++
		fmt.Fprintf(os.Stderr, "cpu profile %s.%d.%d: %s\n", o.cpuProfile, pid, window, next)
	}
	if o.cpuProfile != "" {
		fmt.Fprintf(os.Stderr, "cpu profile %s.%d.0: ingest\n", o.cpuProfile, pid)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: max(o.conns, o.workers) * 2, MaxConnsPerHost: max(o.conns, o.workers)}
	sys := &http.Client{Transport: &keyTransport{key: sysKey, base: tr}, Timeout: 5 * time.Minute}
	logf := func(format string, a ...any) {
		if !o.jsonOut {
			fmt.Printf(format+"\n", a...)
		} else {
			fmt.Fprintf(os.Stderr, format+"\n", a...)
		}
	}
	logf("# lapis-bench real  dialect=%s  cpus=%d  connections=%d  duration=%s  bundles=%d", o.dialect, rep.CPUs, o.conns, o.dur, len(o.files))

	cpu := serverCPU(o.dir)
	if cpu == nil {
		cpu = func() time.Duration { return 0 }
	}
	dbCPU := func() time.Duration { return 0 }
	if o.dialect == "postgres" {
		if f, done := postgresCPU(context.Background(), o.dbURL); f != nil {
			dbCPU = f
			defer done()
		}
	}
	perOK := func(d time.Duration, n int) float64 {
		if n == 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(n)
	}

	// Ingest over HTTP.
	cpu0 := cpu()
	ing := ingest(sys, base, o.files, o.workers)
	rep.IngestCPUus = perOK(cpu()-cpu0, ing.resources)
	rep.Resources, rep.Ingest429, rep.IngestFail = ing.resources, ing.throttled, ing.failed
	rep.IngestSecs = ing.elapsed.Seconds()
	rep.IngestRPS = float64(ing.resources) / ing.elapsed.Seconds()
	logf("ingest: %d bundles, %d resources in %.2fs = %.0f resources/s, %d x 429, %d failed bundles (%d workers), server CPU %.0f µs/resource",
		len(o.files), ing.resources, rep.IngestSecs, rep.IngestRPS, ing.throttled, ing.failed, o.workers, rep.IngestCPUus)
	for _, e := range ing.errs {
		fmt.Fprintln(os.Stderr, "ingest:", e)
	}

	// What a system keeping in step asks after the load: the versions
	// since a moment after it (none, unless something was written since).
	loaded := time.Now().UTC().Add(time.Second).Format(time.RFC3339)

	// Parameters from the loaded data, through the API.
	phase("parameters and bare handler")
	ps, err := pickParams(sys, base)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return fmt.Errorf("no patients loaded")
	}
	// Patient-bound keys for the _history shapes: o.conns patients' apps at
	// once, each key bound to its own patient (a key per request in turn),
	// as the system shapes are measured as o.conns system clients. One key
	// from every connection would measure the per-client and per-patient
	// limits (--rate-limit-patient, the per-client search concurrency),
	// not the server.
	patKeys := make([]string, o.conns)
	for i := range patKeys {
		if patKeys[i], err = createKey(o, fmt.Sprintf("bench-patient-%d", i), "patient/*.rs", "--patient", ps[i%len(ps)].id); err != nil {
			return err
		}
	}
	pat := &http.Client{Transport: &keysTransport{keys: patKeys, base: tr}, Timeout: time.Minute}
	// The shapes are measured as o.conns system clients at once, each
	// with its own key (a key per request in turn): one key alone would
	// measure its class limit (--rate-limit-system), not the server.
	readerKeys := make([]string, o.conns)
	for i := range readerKeys {
		if readerKeys[i], err = createKey(o, fmt.Sprintf("bench-reader-%d", i), "system/*.rs"); err != nil {
			return err
		}
	}
	readers := &http.Client{Transport: &keysTransport{keys: readerKeys, base: tr}, Timeout: time.Minute}

	type shape struct {
		name   string
		client *http.Client
		urls   []string
	}
	var shapes []shape
	add := func(name string, c *http.Client, f func(p patientParams) []string) {
		var urls []string
		for _, p := range ps {
			urls = append(urls, f(p)...)
		}
		if len(urls) > 0 {
			shapes = append(shapes, shape{name, c, urls})
		}
	}
	q := url.QueryEscape
	add("read Patient/{id}", readers, func(p patientParams) []string { return []string{base + "/Patient/" + p.id} })
	add("Observation?patient&code", readers, func(p patientParams) []string {
		if p.code == "" {
			return nil
		}
		return []string{base + "/Observation?patient=" + p.id + "&code=" + q(p.code)}
	})
	add("Observation?patient&category&date", readers, func(p patientParams) []string {
		return []string{base + "/Observation?patient=" + p.id + "&category=laboratory&date=ge" + p.since}
	})
	add("Patient?_id&_revinclude=Obs:patient", readers, func(p patientParams) []string {
		return []string{base + "/Patient?_id=" + p.id + "&_revinclude=Observation:patient"}
	})
	add("Observation?patient&_include=Obs:enc", readers, func(p patientParams) []string {
		return []string{base + "/Observation?patient=" + p.id + "&_include=Observation:encounter"}
	})
	add("Observation?subject:Patient.name", readers, func(p patientParams) []string {
		if p.family == "" {
			return nil
		}
		return []string{base + "/Observation?subject:Patient.name=" + q(p.family)}
	})
	add("Encounter?_has:Observation:encounter:code", readers, func(p patientParams) []string {
		if p.code == "" {
			return nil
		}
		return []string{base + "/Encounter?_has:Observation:encounter:code=" + q(p.code)}
	})
	add("Condition?patient", readers, func(p patientParams) []string { return []string{base + "/Condition?patient=" + p.id} })
	// _sort=-date with paging: the first page and the page its next link
	// names, mixed.
	add("Observation?patient&_sort=-date (pages)", readers, func(p patientParams) []string {
		first := base + "/Observation?patient=" + p.id + "&_sort=-date&_count=20"
		out := []string{first}
		if next, err := nextLink(sys, first); err == nil && next != "" {
			out = append(out, next)
		}
		return out
	})
	add("Observation?patient&_summary=count", readers, func(p patientParams) []string {
		return []string{base + "/Observation?patient=" + p.id + "&_summary=count"}
	})
	shapes = append(shapes,
		shape{"Observation/_history (patient keys)", pat, []string{base + "/Observation/_history"}},
		shape{"_history (patient keys)", pat, []string{base + "/_history"}},
		// A system key may not see AuditEvents: every request so far
		// left one, newer than any version it may see.
		shape{"_history (system key)", readers, []string{base + "/_history"}},
		shape{"_history?_since=after load (system key)", readers, []string{base + "/_history?_since=" + q(loaded)}})
	if o.only != nil {
		shapes = slices.DeleteFunc(shapes, func(s shape) bool { return !o.only.MatchString(s.name) })
	}

	// The bare handler, serving the bytes of one Patient from memory.
	body, err := get(sys, base+"/Patient/"+ps[0].id)
	if err != nil {
		return err
	}
	bareAddr, stopBare, err := serveBare(body)
	if err != nil {
		return err
	}
	defer stopBare()
	plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.conns * 2, MaxConnsPerHost: o.conns}}
	rep.Bare = toRow("bare net/http handler (same bytes)", goLoad(plain, []string{"http://" + bareAddr + "/fhir/Patient/" + ps[0].id}, o.conns, o.dur), 0)

	for _, s := range shapes {
		phase(s.name)
		c0, d0 := cpu(), dbCPU()
		lr := goLoad(s.client, s.urls, o.conns, o.dur)
		row := toRow(s.name, lr, rep.Bare.RPS)
		if row.Errors > 0 {
			fmt.Fprintf(os.Stderr, "%s: answers by status %v, %d transport errors (%s)\n", s.name, lr.codes, lr.transport, lr.firstErr)
		}
		row.CPUus = perOK(cpu()-c0, row.OK)
		row.DBCPUus = perOK(dbCPU()-d0, row.OK)
		row.CopyLagS = copyLag(plain, strings.TrimSuffix(base, "/fhir")+"/metrics")
		rep.Rows = append(rep.Rows, row)
	}
	phase("end")
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	fmt.Println("# latencies and rates of the 200 answers; 429s and other failures counted apart;")
	fmt.Println("# copy lag: how far searchable AuditEvents were behind the audit trail at the end of the phase")
	throttled := false
	fmt.Printf("%-44s %8s %8s %8s %8s %7s %7s %8s %6s %6s %9s %9s %8s\n", "shape", "200/s", "p50 ms", "p99 ms", "max ms", ">100 ms", "x bare", "200", "429", "other", "cpu µs/ok", "db µs/ok", "copy lag")
	for i, r := range append([]realRow{rep.Bare}, rep.Rows...) {
		lag := fmt.Sprintf("%.1fs", r.CopyLagS)
		if i == 0 {
			lag = "" // the bare handler has no audit trail
		}
		fmt.Printf("%-44s %8.0f %8.2f %8.2f %8.2f %7d %7.2f %8d %6d %6d %9.0f %9.0f %8s\n", r.Name, r.RPS, r.P50ms, r.P99ms, r.Maxms, r.Over100ms, r.BareRatio, r.OK, r.Throttled, r.Errors, r.CPUus, r.DBCPUus, lag)
		throttled = throttled || r.Throttled > 0
	}
	if throttled {
		fmt.Println("# 429s come from the default limits: --rate-limit-system (per system key)," +
			" --rate-limit-client and --rate-limit-patient (the patient-bound keys)")
	}
	return nil
}

// toRow summarizes a load phase: the rate and latencies of the 200
// answers, the 429s and the other failures apart; bareRPS (when > 0) gives
// the ratio column.
func toRow(name string, r result, bareRPS float64) realRow {
	slices.Sort(r.okLat)
	row := realRow{Name: name, Requests: r.n, OK: len(r.okLat), Throttled: r.codes[http.StatusTooManyRequests],
		P50ms: ms(percentile(r.okLat, 0.50)), P99ms: ms(percentile(r.okLat, 0.99)), Maxms: ms(percentile(r.okLat, 1))}
	i, _ := slices.BinarySearch(r.okLat, 100*time.Millisecond+1)
	row.Over100ms = len(r.okLat) - i
	row.Errors = r.errors - row.Throttled
	if r.elapsed > 0 {
		row.RPS = float64(row.OK) / r.elapsed.Seconds()
	}
	if bareRPS > 0 {
		row.BareRatio = row.RPS / bareRPS
	} else {
		row.BareRatio = 1
	}
	return row
}

// percentile returns the p-quantile (0..1, nearest rank) of sorted
// latencies, 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	p = min(max(p, 0), 1)
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// createKey creates an API key with the lapis CLI and returns it.
func createKey(o realOptions, name string, scope string, extra ...string) (string, error) {
	args := append([]string{"apikey", "create", "--data-dir", o.dir, "--database", o.dbURL, "--name", name, "--scope", scope, "--json"}, extra...)
	cmd := exec.Command(o.bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("apikey create %s: %w", scope, err)
	}
	var key struct{ Key string }
	if err := json.Unmarshal(out, &key); err != nil || key.Key == "" {
		return "", fmt.Errorf("apikey create output %q: %v", out, err)
	}
	return key.Key, nil
}

type ingestResult struct {
	resources, throttled, failed int
	elapsed                      time.Duration
	errs                         []string
}

// ingest POSTs each bundle to base as a transaction (Prefer:
// return=minimal) from workers goroutines. A 429 is counted and the
// bundle retried after the Retry-After the server gave (capped).
func ingest(c *http.Client, base string, files []string, workers int) ingestResult {
	var res ingestResult
	var mu sync.Mutex
	var resources, throttled, failed atomic.Int64
	next := make(chan string)
	var wg sync.WaitGroup
	start := time.Now()
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				n, t, err := postBundle(c, base, f)
				throttled.Add(int64(t))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					res.errs = append(res.errs, filepath.Base(f)+": "+err.Error())
					mu.Unlock()
					continue
				}
				resources.Add(int64(n))
			}
		}()
	}
	for _, f := range files {
		next <- f
	}
	close(next)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.resources, res.throttled, res.failed = int(resources.Load()), int(throttled.Load()), int(failed.Load())
	return res
}

// postBundle sends one transaction and returns its entry count and the
// number of 429 answers before it succeeded.
func postBundle(c *http.Client, base, file string) (int, int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	var b struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return 0, 0, err
	}
	throttled := 0
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest("POST", base, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=minimal")
		resp, err := c.Do(req)
		if err != nil {
			return 0, throttled, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests && attempt < 50:
			throttled++
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = time.Duration(min(s, 30)) * time.Second
			}
			time.Sleep(max(wait, 100*time.Millisecond))
			continue
		case resp.StatusCode != http.StatusOK:
			return 0, throttled, fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, msg)
		}
		return len(b.Entry), throttled, nil
	}
}

// patientParams are the search parameters picked for one patient.
type patientParams struct {
	id, family, code, since string
}

// pickParams lists the patients and, for each, its family name, its most
// frequent LOINC code and a date for the category&date search (a year
// before its newest laboratory Observation).
func pickParams(c *http.Client, base string) ([]patientParams, error) {
	var ps []patientParams
	err := pages(c, base+"/Patient?_count=200&_elements=id,name", func(raw json.RawMessage) {
		var p struct {
			ID   string `json:"id"`
			Name []struct {
				Family string `json:"family"`
			} `json:"name"`
		}
		if json.Unmarshal(raw, &p) == nil && p.ID != "" {
			pp := patientParams{id: p.ID, since: "2015-01-01"}
			if len(p.Name) > 0 {
				pp.family = p.Name[0].Family
			}
			ps = append(ps, pp)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing patients: %w", err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make([]error, len(ps))
	for i := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var codes []string
			newestLab := ""
			errs[i] = pages(c, base+"/Observation?patient="+ps[i].id+"&_count=1000&_elements=code,category,effective", func(raw json.RawMessage) {
				var o struct {
					Code struct {
						Coding []struct{ System, Code string } `json:"coding"`
					} `json:"code"`
					Category []struct {
						Coding []struct{ Code string } `json:"coding"`
					} `json:"category"`
					EffectiveDateTime string `json:"effectiveDateTime"`
				}
				if json.Unmarshal(raw, &o) != nil {
					return
				}
				for _, cd := range o.Code.Coding {
					if cd.System == "http://loinc.org" && cd.Code != "" {
						codes = append(codes, cd.System+"|"+cd.Code)
						break
					}
				}
				for _, cat := range o.Category {
					for _, cd := range cat.Coding {
						if cd.Code == "laboratory" && len(o.EffectiveDateTime) >= 10 && o.EffectiveDateTime[:10] > newestLab {
							newestLab = o.EffectiveDateTime[:10]
						}
					}
				}
			})
			ps[i].code = mostFrequent(codes)
			if t, err := time.Parse("2006-01-02", newestLab); err == nil {
				ps[i].since = t.AddDate(-1, 0, 0).Format("2006-01-02")
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("picking parameters: %w", err)
		}
	}
	return ps, nil
}

// mostFrequent returns the most frequent string, the smallest one among
// equally frequent ones ("" for none).
func mostFrequent(xs []string) string {
	n := map[string]int{}
	best := ""
	for _, x := range xs {
		n[x]++
	}
	for x, c := range n {
		if c > n[best] || (c == n[best] && x < best) {
			best = x
		}
	}
	return best
}

// searchBundle is the part of a searchset Bundle the benchmark reads.
type searchBundle struct {
	Link []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

// pages calls f for every resource of a search, following next links.
func pages(c *http.Client, u string, f func(json.RawMessage)) error {
	for u != "" {
		b, err := fetchBundle(c, u)
		if err != nil {
			return err
		}
		for _, e := range b.Entry {
			f(e.Resource)
		}
		u = b.next()
	}
	return nil
}

// nextLink returns the next-page link of a search's first page.
func nextLink(c *http.Client, u string) (string, error) {
	b, err := fetchBundle(c, u)
	if err != nil {
		return "", err
	}
	return b.next(), nil
}

func (b *searchBundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

func fetchBundle(c *http.Client, u string) (*searchBundle, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var b searchBundle
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &b, nil
}

// copyLag reads lapis_audit_copy_lag_seconds of the production
// environment from the server's /metrics (loopback may read it), -1 when
// it cannot.
func copyLag(c *http.Client, metricsURL string) float64 {
	body, err := get(c, metricsURL)
	if err != nil {
		return -1
	}
	const series = `lapis_audit_copy_lag_seconds{env="production"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}
