package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// runCluster (-mode cluster) measures reads by id and
// Observation?patient&code through HAProxy (deploy/haproxy.cfg) in front
// of 1, 2 and 3 instances on one PostgreSQL database, beside a direct
// connection to one instance: the overhead of the load balancer and the
// cluster machinery. On one machine the instances share its cores, so
// this shows overhead, not scaling.
func runCluster(bin, dir, dbURL, key string, conns int, dur time.Duration) error {
	if dbURL == "" {
		return fmt.Errorf("-mode cluster needs -database (instances share one PostgreSQL database)")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		return fmt.Errorf("-mode cluster needs haproxy (apt-get install haproxy)")
	}
	cfg, err := filepath.Abs(filepath.Join("deploy", "haproxy.cfg"))
	if err != nil {
		return err
	}
	front := freeLoopback()
	args := append(benchLimits(), "--kek-file", filepath.Join(dir, "auth-kek"), "--base-url", "http://"+front)
	var insts []*lapistest.Server
	defer func() {
		for _, s := range insts {
			_ = s.Stop()
		}
	}()
	client := &http.Client{Transport: &keyTransport{key: key, base: &http.Transport{MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: conns}}}
	fmt.Printf("# lapis-bench -mode cluster  cpus=%d  connections=%d  duration=%s\n", runtime.NumCPU(), conns, dur)
	for n := 1; n <= 3; n++ {
		dd := dir
		if n > 1 {
			if dd, err = os.MkdirTemp("", "lapis-bench-inst-"); err != nil {
				return err
			}
			defer os.RemoveAll(dd)
		}
		s, err := lapistest.Launch(lapistest.Options{Bin: bin, DataDir: dd, Database: dbURL, Args: args})
		if err != nil {
			return err
		}
		insts = append(insts, s)
		direct := "http://" + insts[0].Addr + "/fhir"
		env := []string{"LAPIS_FRONT=" + front}
		for i := range 3 {
			addr := "127.0.0.1:1" // no instance: HAProxy marks it down
			if i < len(insts) {
				addr = insts[i].Addr
			}
			env = append(env, fmt.Sprintf("LAPIS_%d=%s", i+1, addr))
		}
		cmd := exec.Command(haproxy, "-f", cfg, "-db")
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			return err
		}
		lb := "http://" + front + "/fhir"
		if !waitUp(client, lb+"/metadata", n) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("haproxy did not forward to %d instances:\n%s", n, out.String())
		}
		patients, err := ids(client, direct+"/Patient?_count=200&_elements=id")
		if err != nil || len(patients) == 0 {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("no patients found: %v", err)
		}
		for _, via := range []struct{ name, base string }{{"direct to one instance", direct}, {fmt.Sprintf("HAProxy, %d instance(s)", n), lb}} {
			if n > 1 && via.base == direct {
				continue // the direct figure does not depend on n
			}
			var reads, obs []string
			for _, p := range patients {
				reads = append(reads, via.base+"/Patient/"+p)
				obs = append(obs, via.base+"/Observation?patient="+p+"&code="+url.QueryEscape("http://loinc.org|29463-7"))
			}
			report("read Patient/{id}, "+via.name, load(client, reads, conns, dur))
			report("Observation?patient&code, "+via.name, load(client, obs, conns, dur))
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return nil
}

// waitUp polls u until HAProxy has answered from n different servers.
func waitUp(c *http.Client, u string, n int) bool {
	seen := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				seen[resp.Header.Get("X-Lapis-Server")] = true
			}
		}
		if len(seen) >= n {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freeLoopback() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:18080"
	}
	defer l.Close()
	return l.Addr().String()
}
