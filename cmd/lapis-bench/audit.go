package main

import (
	"fmt"
	"net/http"
	"time"
)

// compareAudit measures what the audit trail adds to an authenticated
// read by id: two servers on the same data, one with the audit trail on
// (the default) and one with --no-audit, both with rate limits evaluated
// but set too high to refuse; the loads alternate, at 1 connection
// (latency) and at conns.
func compareAudit(bin, dir, dbURL, key string, patients []string, conns int, dur time.Duration) error {
	limits := benchLimits()
	onBase, stopOn, err := startServe(bin, dir, dbURL, limits...)
	if err != nil {
		return err
	}
	defer stopOn()
	offBase, stopOff, err := startServe(bin, dir, dbURL, append(limits, "--no-audit")...)
	if err != nil {
		return err
	}
	defer stopOff()
	urls := func(base string) []string {
		var out []string
		for _, p := range patients {
			out = append(out, base+"/Patient/"+p)
		}
		return out
	}
	fmt.Println("# audit overhead, read by id (X-API-Key, scope-checked, rate limits evaluated)")
	for _, c := range []int{1, conns} {
		client := &http.Client{Transport: &keyTransport{key: key, base: &http.Transport{MaxIdleConnsPerHost: c * 2, MaxConnsPerHost: c}}}
		for round := 0; round < 2; round++ {
			report(fmt.Sprintf("audit off (%d conns)", c), load(client, urls(offBase), c, dur))
			report(fmt.Sprintf("audit on (%d conns)", c), load(client, urls(onBase), c, dur))
		}
	}
	return nil
}
