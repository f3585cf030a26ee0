package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// exportOptions are the settings of -mode export.
type exportOptions struct {
	replicas   int    // times the bundles are imported (new ids each time)
	skip       bool   // -skip-import: the data directory holds the data already
	conns      int    // readers by id while the export runs (0: none)
	cpuProfile string // the server's CPU profile prefix (LAPIS_CPUPROFILE)
	// patients, when > 0, exports the compartments of that many patients
	// (a POST Patient/$export naming them) instead of the whole system.
	patients int
}

// runExport imports the bundles replicas times, starts lapis serve, and
// measures a system-level $export to the local folder twice: first while
// conns other clients read by id (the readers' latency is reported),
// then alone. For each: resources/s, and the server's peak memory over
// its idle level.
func runExport(bin, dir, dbURL, dialect string, files []string, o exportOptions) error {
	start := time.Now()
	for i := 0; i < o.replicas && !o.skip; i++ {
		args := append([]string{"import", "--data-dir", dir, "--database", dbURL, "--quiet", "--json"}, files...)
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		if _, err := cmd.Output(); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	fmt.Printf("# lapis-bench -mode export  dialect=%s  imported %d bundles x %d in %.0fs\n", dialect, len(files), o.replicas, time.Since(start).Seconds())
	key, err := benchKey(bin, dir, dbURL)
	if err != nil {
		return err
	}
	dbName := ""
	if u, err := url.Parse(dbURL); err == nil && dbURL != "" {
		dbName = strings.TrimPrefix(u.Path, "/")
	}
	var env []string
	if o.cpuProfile != "" {
		env = append(env, "LAPIS_CPUPROFILE="+o.cpuProfile)
	}
	srv, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: dir, Database: dbURL, Env: env, Args: append([]string{"--log-level", "info"}, benchLimits()...)})
	if err != nil {
		return err
	}
	defer srv.Stop()
	client := &http.Client{Transport: &keyTransport{key: key, base: &http.Transport{MaxIdleConnsPerHost: 64}}}
	patients, err := ids(client, srv.Base+"/Patient?_count=200&_elements=id")
	if err != nil || len(patients) == 0 {
		return fmt.Errorf("no patients found: %v", err)
	}
	var urls []string
	for _, p := range patients {
		urls = append(urls, srv.Base+"/Patient/"+p)
	}
	load(client, urls, max(o.conns, 8), time.Second) // warm up
	// Each export is a window of the CPU profile (SIGUSR1 ends window n,
	// written whole once window n+1's file exists).
	n := 0
	window := func() {
		if o.cpuProfile == "" {
			return
		}
		n++
		_ = syscall.Kill(srv.PID(), syscall.SIGUSR1)
		next := fmt.Sprintf("%s.%d.%d", o.cpuProfile, srv.PID(), n)
		for t := time.Now(); time.Since(t) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(next); err == nil {
				return
			}
		}
	}
	for _, conns := range []int{o.conns, 0} {
		window()
		err := exportOnce(client, srv, dbName, urls, conns, patients[:min(o.patients, len(patients))])
		window()
		if err != nil {
			return err
		}
		if o.conns == 0 {
			break
		}
	}
	return nil
}

// exportOnce runs one system-level $export while conns clients read urls
// (none when 0) and prints its figures.
func exportOnce(client *http.Client, srv *lapistest.Server, dbName string, urls []string, conns int, patients []string) error {
	idle := procKB(srv.PID(), "VmRSS")
	hwm0 := procKB(srv.PID(), "VmHWM")
	// Anonymous memory (heap, stacks) apart from file pages mapped into
	// the process, which count in RSS but are the kernel's page cache:
	// sampled while the export runs.
	anonIdle := procKB(srv.PID(), "RssAnon")
	anonPeak := anonIdle
	cpu0 := procCPU(fmt.Sprintf("/proc/%d/stat", srv.PID()))
	db0 := backendsCPU(dbName)

	req, _ := http.NewRequest("GET", srv.Base+"/$export", nil)
	if len(patients) > 0 {
		// The patients' compartments: a resource in several of them is
		// written once.
		var params []map[string]any
		for _, p := range patients {
			params = append(params, map[string]any{"name": "patient", "valueReference": map[string]string{"reference": "Patient/" + p}})
		}
		body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
		req, _ = http.NewRequest("POST", srv.Base+"/Patient/$export", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Prefer", "respond-async")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	status := resp.Header.Get("Content-Location")
	if resp.StatusCode != http.StatusAccepted || status == "" {
		return fmt.Errorf("kick-off: %d", resp.StatusCode)
	}
	t0 := time.Now()
	// Readers by id run while the export does.
	done := make(chan result, 1)
	stopReads := make(chan struct{})
	go func() {
		var all result
		for conns > 0 {
			r := load(client, urls, conns, 500*time.Millisecond)
			all.n += r.n
			all.errors += r.errors
			all.elapsed += r.elapsed
			all.lat = append(all.lat, r.lat...)
			select {
			case <-stopReads:
				done <- all
				return
			default:
			}
		}
		done <- all
	}()
	var body []byte
	for {
		resp, err := client.Get(status)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusOK {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status: %d", resp.StatusCode)
		}
		anonPeak = max(anonPeak, procKB(srv.PID(), "RssAnon"))
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(t0)
	cpu := procCPU(fmt.Sprintf("/proc/%d/stat", srv.PID())) - cpu0
	dbCPU := backendsCPU(dbName) - db0
	close(stopReads)
	reads := <-done
	peak := procKB(srv.PID(), "VmHWM")
	var m struct {
		Output []struct{ Count int }
		Error  []struct{ URL string }
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	n := 0
	for _, f := range m.Output {
		n += f.Count
	}
	what := "system export"
	if len(patients) > 0 {
		what = fmt.Sprintf("export of %d patients' compartments", len(patients))
	}
	with := "alone"
	if conns > 0 {
		with = fmt.Sprintf("while %d clients read by id", conns)
	}
	fmt.Printf("%s %s: %d resources in %d files (%d error files) in %.2fs = %.0f resources/s\n", what, with, n, len(m.Output), len(m.Error), el.Seconds(), float64(n)/el.Seconds())
	// The server's CPU time is less sensitive to other load on the
	// machine than the wall clock (the database server's, on PostgreSQL,
	// is not counted).
	fmt.Printf("server CPU time during the export: %.2fs = %.1f µs per resource (%.0f resources per CPU second)\n",
		cpu.Seconds(), float64(cpu.Microseconds())/float64(n), float64(n)/cpu.Seconds())
	if dbName != "" {
		fmt.Printf("PostgreSQL backends' CPU time (this database's connections that lived throughout): %.2fs = %.1f µs per resource\n",
			dbCPU.Seconds(), float64(dbCPU.Microseconds())/float64(n))
	}
	fmt.Printf("server memory: idle RSS %.0f MB, peak %.0f MB (peak before the export %.0f MB): growth %.0f MB\n",
		float64(idle)/1024, float64(peak)/1024, float64(hwm0)/1024, float64(peak-idle)/1024)
	fmt.Printf("server anonymous memory (heap, stacks; without mapped database file pages): idle %.0f MB, peak %.0f MB sampled every 20 ms: growth %.0f MB\n",
		float64(anonIdle)/1024, float64(anonPeak)/1024, float64(anonPeak-anonIdle)/1024)
	if conns > 0 {
		report(fmt.Sprintf("read Patient/{id} during export (%d conns)", conns), reads)
	}
	return nil
}

// backendsCPU returns the CPU time used so far by the PostgreSQL backends
// connected to database db ("" or none found: 0).
func backendsCPU(db string) time.Duration {
	if db == "" {
		return 0
	}
	var sum time.Duration
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(b), "postgres: ") || !strings.Contains(string(b), " "+db+" ") {
			continue
		}
		sum += procCPU(filepath.Join(filepath.Dir(p), "stat"))
	}
	return sum
}

// procKB reads a "Vm…" line of /proc/PID/status, in kB (0 when unknown).
func procKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
