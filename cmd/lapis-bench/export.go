package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// exportOptions are the settings of -mode export.
type exportOptions struct {
	replicas int  // times the bundles are imported (new ids each time)
	skip     bool // -skip-import: the data directory holds the data already
	conns    int  // readers by id while the export runs
}

// runExport imports the bundles replicas times, starts lapis serve, and
// measures one system-level $export to the local folder: resources/s,
// the server's peak resident memory over its idle level, and the latency
// of reads by id from conns other clients while the export runs.
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
	srv, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: dir, Database: dbURL, Args: append([]string{"--log-level", "info"}, benchLimits()...)})
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
	load(client, urls, o.conns, time.Second) // warm up
	idle := procKB(srv.PID(), "VmRSS")
	hwm0 := procKB(srv.PID(), "VmHWM")
	// Anonymous memory (heap, stacks) apart from the file pages of the
	// SQLite file mapped into the process (mmap_size), which count in RSS
	// but are the kernel's page cache: sampled while the export runs.
	anonIdle := procKB(srv.PID(), "RssAnon")
	anonPeak := anonIdle

	req, _ := http.NewRequest("GET", srv.Base+"/$export", nil)
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
		for {
			r := load(client, urls, o.conns, 500*time.Millisecond)
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
	fmt.Printf("export: %d resources in %d files (%d error files) in %.2fs = %.0f resources/s\n", n, len(m.Output), len(m.Error), el.Seconds(), float64(n)/el.Seconds())
	fmt.Printf("server memory: idle RSS %.0f MB, peak %.0f MB (peak before the export %.0f MB): growth %.0f MB\n",
		float64(idle)/1024, float64(peak)/1024, float64(hwm0)/1024, float64(peak-idle)/1024)
	fmt.Printf("server anonymous memory (heap, stacks; without mapped database file pages): idle %.0f MB, peak %.0f MB sampled every 20 ms: growth %.0f MB\n",
		float64(anonIdle)/1024, float64(anonPeak)/1024, float64(anonPeak-anonIdle)/1024)
	report(fmt.Sprintf("read Patient/{id} during export (%d conns)", o.conns), reads)
	return nil
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
