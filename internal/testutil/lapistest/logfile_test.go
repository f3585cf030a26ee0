package lapistest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
)

// fakeServeEnv makes the test binary run fakeServe instead of the tests
// (TestMain): a stand-in for lapis serve whose timing the test controls.
const fakeServeEnv = "LAPISTEST_FAKE_SERVE_LOG"

// fakeServe acts as lapis serve with --log-file semantics under test: it
// logs its serving line, and for each request it writes a line to stderr
// and then reads the log file (named by fakeServeEnv) before answering:
// 200 when the line is already in the file, 409 when it is not. It shuts
// down on SIGTERM.
func fakeServe() int {
	logFile := os.Getenv(fakeServeEnv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr := ln.Addr().String()
	n := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		line := fmt.Sprintf("fake request %d\n", n)
		if _, err := os.Stderr.WriteString(line); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		got, err := os.ReadFile(logFile)
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case !strings.Contains(string(got), line):
			http.Error(w, "line not in the log file yet", http.StatusConflict)
		default:
			fmt.Fprint(w, line)
		}
	})}
	fmt.Fprintf(os.Stderr, "{\"msg\":\"lapis serving\",\"addr\":%q,\"fhir_base\":%q}\n", addr, "http://"+addr+"/fhir")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestLogFileBeforeAnswer: with Options.LogFile, a line the server wrote
// is in the file by the time the server answers the request that logged
// it (the README greps ~/lapis.log for a link right after the request
// that mailed it). The fake server checks the file itself between its
// write and its answer, so no timing is left to chance in the harness's
// favour; the test checks again when the answer arrives.
func TestLogFileBeforeAnswer(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "lapis.log")
	if err := os.WriteFile(logFile, []byte("an earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := lapistest.Start(t, lapistest.Options{Bin: bin, LogFile: logFile, Env: []string{fakeServeEnv + "=" + logFile}})
	for i := 1; i <= 20; i++ {
		r := s.Do(t, "GET", "/", nil)
		line := fmt.Sprintf("fake request %d\n", i)
		if r.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		got, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), line) {
			t.Fatalf("request %d answered before %q was in the log file", i, line)
		}
	}
	// The harness still reads the output: the serving line, the request
	// lines, and not what the file held before the server started.
	s.WaitLog(t, lapistest.DefaultStartTimeout, "fake request 20")
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	s.Do(t, "GET", "/", nil)
	s.WaitLog(t, lapistest.DefaultStartTimeout, "fake request 1")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	logs := s.Logs()
	if strings.Contains(logs, "an earlier run") || strings.Count(logs, `"msg":"lapis serving"`) != 2 || strings.Count(logs, "fake request 1\n") != 2 {
		t.Fatalf("Logs():\n%s", logs)
	}
	got, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "an earlier run\n") || !strings.HasSuffix(string(got), "fake request 1\n") {
		t.Fatalf("log file:\n%s", got)
	}
}
