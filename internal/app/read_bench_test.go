package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/apikey"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
)

// BenchmarkServeRead is read by id through the whole server with the
// default configuration (audit trail and rate limits on) over loopback
// HTTP, as lapis-bench -mode real measures it but in one process, so
// that -cpuprofile and -memprofile see the request path, the audit
// writer and the copy together. cpu-ns/op is the process's CPU time per
// read (the clients' included). The copy into searchable AuditEvents
// catches up when the server closes: in the profile, after the timed
// loop, and in cpu-all-ns/op, the CPU time per read until the server has
// closed (the whole cost of a read and its record).
func BenchmarkServeRead(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) { benchServeRead(b, dialect) })
	}
}

func benchServeRead(b *testing.B, dialect string) {
	ctx := context.Background()
	ln, root, cfg := listenConfig(b)
	cfg.Server.BaseURL = root
	if dialect == "postgres" {
		cfg.Database.URL = pgtest.New(b)
	}
	if err := cfg.Normalize(true); err != nil {
		b.Fatal(err)
	}
	db, err := authdb.Open(ctx, cfg.Database.URL, cfg.Database.DataDir)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key, prefix, hash, err := apikey.New()
	if err != nil {
		b.Fatal(err)
	}
	id, err := apikey.NewID()
	if err != nil {
		b.Fatal(err)
	}
	if err := db.CreateAPIKey(ctx, &authdb.APIKey{ID: id, Name: "bench", Hash: hash, Prefix: prefix, Scopes: []string{"system/*.cruds"},
		CreatedAt: time.Now(), RateLimit: authdb.RateLimit{Limit: "none"}}); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	closed := false
	shut := func() {
		if !closed {
			closed = true
			stop()
			<-done
			srv.Close()
		}
	}
	defer shut()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	send := func(method, path, body string) (int, string) {
		r, _ := http.NewRequest(method, root+"/fhir"+path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			r.Header.Set("Content-Type", "application/fhir+json")
		}
		resp, err := c.Do(r)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	var ids []string
	for range 20 {
		st, body := send("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Bench","given":["Read"]}],"gender":"female","birthDate":"1970-01-01"}`)
		if st != 201 {
			b.Fatal(st, body)
		}
		i := strings.Index(body, `"id":"`)
		ids = append(ids, body[i+6:i+6+strings.IndexByte(body[i+6:], '"')])
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.SetParallelism(4) // 8 clients on 2 cores, as lapis-bench -mode real
	b.ReportAllocs()
	b.ResetTimer()
	start := cpu()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if st, body := send("GET", "/Patient/"+ids[i%len(ids)], ""); st != 200 {
				b.Error(st, body)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	// With the copy's catch-up on close: every record of the loop
	// stored as a searchable AuditEvent (the copy runs at its duty while
	// reads keep coming, so cpu-ns/op holds only part of its cost).
	shut()
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-all-ns/op")
}
