package lapistest_test

import (
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeServeEnv) != "" {
		os.Exit(fakeServe())
	}
	lapistest.Main(m)
}

// TestServerLifecycle starts a server on a port it binds itself, kills it
// like a crash, restarts it on the same address and data, and stops it.
func TestServerLifecycle(t *testing.T) {
	s := lapistest.Start(t, lapistest.Options{Args: []string{"--dev-no-auth"}})
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr %q", s.Addr)
	}
	if s.Base != "http://"+s.Addr+"/fhir" || s.Origin != "http://"+s.Addr {
		t.Fatalf("Base %q Origin %q", s.Base, s.Origin)
	}
	if r := s.Do(t, "GET", s.Origin+"/readyz", nil); r.Status != 200 {
		t.Fatalf("/readyz: %d", r.Status)
	}
	created := s.Do(t, "PUT", "/Patient/lifecycle", strings.NewReader(`{"resourceType":"Patient","id":"lifecycle"}`),
		"Content-Type", "application/fhir+json")
	if created.Status != 201 {
		t.Fatalf("create: %d %s", created.Status, created.Body)
	}
	// An admin command on the server's database.
	var key struct{ Key string }
	if err := json.Unmarshal([]byte(s.MustCLI(t, "", "apikey", "create", "--name", "x", "--scope", "system/*.rs", "--json")), &key); err != nil || key.Key == "" {
		t.Fatalf("apikey create: %v", err)
	}

	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited():
	default:
		t.Fatal("Kill returned before the process exited")
	}
	base := s.Base
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Base != base {
		t.Fatalf("restarted on %q, was %q", s.Base, base)
	}
	if r := s.Do(t, "GET", "/Patient/lifecycle", nil); r.Status != 200 {
		t.Fatalf("read after restart: %d %s", r.Status, r.Body)
	}
	// Both runs' output is kept; each logged its serving line.
	if n := strings.Count(s.Logs(), `"msg":"lapis serving"`); n != 2 {
		t.Fatalf("%d serving lines", n)
	}
	s.WaitLog(t, time.Minute, `"msg":"lapis serving"`, s.Addr)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestStartFailure: a server that cannot start is reported with its
// output, without waiting for the start timeout.
func TestStartFailure(t *testing.T) {
	_, err := lapistest.Launch(lapistest.Options{Bin: lapistest.Binary(t), DataDir: t.TempDir(), Addr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "exited before serving") || !strings.Contains(err.Error(), "allow-remote") {
		t.Fatalf("err = %v", err)
	}
	if _, err := lapistest.Launch(lapistest.Options{Bin: lapistest.Binary(t), DataDir: t.TempDir(), Args: []string{"--log-level", "warn"}}); err == nil {
		t.Fatal("--log-level warn accepted")
	}
}
