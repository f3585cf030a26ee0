package lapistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Default time bounds. They only bound a wait for an event (the serving
// log line, the process exit): nothing waits for them to pass.
const (
	// DefaultStartTimeout bounds the wait for "lapis serving" (migrations
	// of a new PostgreSQL database under -race on a loaded machine take
	// seconds).
	DefaultStartTimeout = 2 * time.Minute
	// DefaultStopTimeout bounds the graceful shutdown after SIGTERM.
	DefaultStopTimeout = 30 * time.Second
)

// Options configure a lapis serve process.
type Options struct {
	// Bin is the lapis binary (Start: Binary(t) when empty).
	Bin string
	// DataDir is --data-dir (Start: a new t.TempDir() when empty).
	DataDir string
	// Database is --database: a postgres:// URL, or "" for the embedded
	// SQLite database in DataDir.
	Database string
	// Addr is --addr (default 127.0.0.1:0: the server picks a free port
	// and reports it). Any HOST:0 keeps that property.
	Addr string
	// EnvConfig leaves --addr, --data-dir and --database out, for a test
	// of LAPIS_ADDR, LAPIS_DATA_DIR and LAPIS_DATABASE_URL in Env (set
	// DataDir and Database to the same values for CLI).
	EnvConfig bool
	// Args are more serve flags. The log level must stay at info or
	// debug: the "lapis serving" line is logged at info.
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// SandboxData keeps the default of loading the built-in sandbox
	// dataset at start; without it the server runs with
	// LAPIS_SANDBOX_LOAD=false (a flag in Args still decides), so tests
	// that do not read sandbox data start faster.
	SandboxData bool
	// RootCAs, when set, is trusted by Client (a server with --tls-cert).
	RootCAs *x509.CertPool
	// LogFile, when set, receives everything the server writes
	// (appended), as "lapis serve 2>>FILE" would (the README test's
	// development-mode mail links): the file is the process's stdout and
	// stderr, so a line is in it before the server answers the request
	// that logged it, and Logs and WaitLog follow the file.
	LogFile string
	// StartTimeout and StopTimeout override the defaults above.
	StartTimeout, StopTimeout time.Duration
}

// Server is a running (or stopped) lapis serve process.
type Server struct {
	// Addr is the address the server bound, HOST:PORT.
	Addr string
	// Base is the FHIR base URL the server serves (and issues tokens
	// for), e.g. http://127.0.0.1:PORT/fhir.
	Base string
	// Origin is Base without the /fhir path: scheme://HOST:PORT.
	Origin string
	// DataDir and Database are the server's --data-dir and --database.
	DataDir, Database string
	// Client reaches the server (it trusts Options.RootCAs).
	Client *http.Client

	opts Options
	logs *Logs

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	waitErr error         // cmd.Wait's result, set before exited closes
	ended   bool          // Stop or Kill ended (or saw the end of) cmd
}

// Launch starts lapis serve with opts and returns once it logged "lapis
// serving" (its listener is open and every component is up). opts.Bin and
// opts.DataDir are required. The caller must Stop or Kill the server.
func Launch(opts Options) (*Server, error) {
	if opts.Bin == "" || opts.DataDir == "" {
		return nil, errors.New("lapistest: Options.Bin and Options.DataDir are required")
	}
	level := ""
	for i, a := range opts.Args {
		if a == "--log-level" && i+1 < len(opts.Args) {
			level = opts.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--log-level="); ok {
			level = v
		}
	}
	switch level {
	case "warn", "error":
		return nil, errors.New("lapistest: --log-level above info hides the \"lapis serving\" line")
	case "":
		// Info, whatever LAPIS_LOG_LEVEL the environment sets.
		opts.Args = append([]string{"--log-level", "info"}, opts.Args...)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs}
	}
	s := &Server{DataDir: opts.DataDir, Database: opts.Database, opts: opts, logs: &Logs{},
		Client: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	if err := s.start(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Start is Launch for a test: it fills in Bin and DataDir, fails t when
// the server does not come up, and stops the server when t ends (logging
// its output if t failed).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Bin == "" {
		opts.Bin = Binary(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := Launch(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("lapis serve output:\n%s", s.Logs())
		}
	})
	return s
}

// start runs the process on addr and waits for its serving line.
func (s *Server) start(addr string) error {
	args := []string{"serve"}
	if !s.opts.EnvConfig {
		args = append(args, "--addr", addr, "--data-dir", s.DataDir, "--database", s.Database)
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(s.opts.Bin, args...)
	cmd.Env = os.Environ()
	if !s.opts.SandboxData {
		cmd.Env = append(cmd.Env, "LAPIS_SANDBOX_LOAD=false")
	}
	cmd.Env = append(cmd.Env, s.opts.Env...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	offset := s.logs.len()
	var fl *follower
	if s.opts.LogFile != "" {
		// The file itself is the process's output, as with 2>>FILE: a
		// line is in the file once the server wrote it, before it answers
		// the request that logged it. Logs follows the file.
		f, err := os.OpenFile(s.opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("lapistest: log file: %w", err)
		}
		defer f.Close() // the process has its own descriptor
		if fl, err = follow(s.opts.LogFile, s.logs); err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if fl != nil {
			fl.stop()
		}
		return fmt.Errorf("lapistest: starting lapis serve: %w", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.ended = cmd, exited, false
	s.mu.Unlock()
	go func() {
		err := cmd.Wait() // after the output is copied
		if fl != nil {
			fl.stop() // after the last line is in Logs
		}
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
	defer cancel()
	line, ok := s.logs.WaitLine(ctx, exited, offset, `"msg":"lapis serving"`)
	if !ok {
		select {
		case <-exited:
			return fmt.Errorf("lapistest: lapis serve exited before serving (%v):\n%s", s.exitErr(), s.logs.String())
		default:
		}
		_ = s.Kill()
		return fmt.Errorf("lapistest: lapis serve did not log \"lapis serving\" within %v:\n%s", s.opts.StartTimeout, s.logs.String())
	}
	var serving struct {
		Addr     string `json:"addr"`
		FHIRBase string `json:"fhir_base"`
	}
	if err := json.Unmarshal([]byte(line), &serving); err != nil || serving.Addr == "" || serving.FHIRBase == "" {
		_ = s.Kill()
		return fmt.Errorf("lapistest: unreadable serving line %q: %v", line, err)
	}
	s.Addr, s.Base = serving.Addr, serving.FHIRBase
	s.Origin = strings.TrimSuffix(s.Base, "/fhir")
	return nil
}

// exitErr is the process's exit error (after exited closed).
func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// running returns the current process and its exit channel; cmd is nil
// when the server was never started.
func (s *Server) running() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd, s.exited
}

// end marks the current process as ended by Stop or Kill and reports
// whether it already was.
func (s *Server) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.ended
	s.ended = true
	return was
}

// PID is the process id of the current server process (0 when none), for
// measurements such as its resident memory.
func (s *Server) PID() int {
	if cmd, _ := s.running(); cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Exited is closed when the current process has exited.
func (s *Server) Exited() <-chan struct{} {
	_, exited := s.running()
	return exited
}

// Stop shuts the server down gracefully (SIGTERM) and waits for it to
// exit; past StopTimeout it is killed and Stop reports it. It also
// reports a non-zero exit status, and a process that had exited by
// itself. Stopping a stopped or killed server does nothing.
func (s *Server) Stop() error {
	cmd, exited := s.running()
	if cmd == nil || s.end() {
		return nil
	}
	select {
	case <-exited:
		return fmt.Errorf("lapistest: lapis serve had exited by itself (%v)", s.exitErr())
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(s.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		_ = s.Kill()
		return fmt.Errorf("lapistest: lapis serve did not shut down within %v of SIGTERM", s.opts.StopTimeout)
	}
	s.Client.CloseIdleConnections()
	if err := s.exitErr(); err != nil {
		return fmt.Errorf("lapistest: lapis serve after SIGTERM: %w", err)
	}
	return nil
}

// Terminate sends SIGTERM and returns at once, for a test of the
// shutdown itself: wait on Exited, then read ExitErr. (Stop and the
// cleanup of Start then do nothing.)
func (s *Server) Terminate() error {
	cmd, _ := s.running()
	if cmd == nil {
		return errors.New("lapistest: server not started")
	}
	s.end()
	return cmd.Process.Signal(syscall.SIGTERM)
}

// ExitErr is the exit error of the current process once Exited is
// closed (nil: exit status 0).
func (s *Server) ExitErr() error { return s.exitErr() }

// Kill ends the server at once (SIGKILL, as a crash would) and waits for
// the process to be gone.
func (s *Server) Kill() error {
	cmd, exited := s.running()
	if cmd == nil {
		return nil
	}
	s.end()
	_ = cmd.Process.Kill()
	<-exited
	s.Client.CloseIdleConnections()
	return nil
}

// Restart stops the server if it runs (gracefully) and starts it again
// with the same options and data, on the same address, so the base URL
// and the issuer of the tokens it issued stay valid. Binding fails, and
// Restart with it, in the unlikely case another process took the port
// meanwhile.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(s.Addr)
}

// Logs returns everything the server processes wrote so far (all runs).
func (s *Server) Logs() string { return s.logs.String() }

// WaitLog waits up to timeout for a line of the server's output (of any
// run) containing every one of subs and returns it; it fails t when none
// comes or the process exits first.
func (s *Server) WaitLog(t testing.TB, timeout time.Duration, subs ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line, ok := s.logs.WaitLine(ctx, s.Exited(), 0, subs...)
	if !ok {
		t.Fatalf("no server log line with %q within %v", subs, timeout)
	}
	return line
}

// URL resolves path against Base: an absolute URL is kept, anything else
// is appended to the FHIR base.
func (s *Server) URL(path string) string {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		return path
	}
	return s.Base + path
}

// Response is an HTTP response read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request to s.URL(path) with the given body and header
// pairs (name, value; an empty value deletes the header) and reads the
// response; transport errors fail t.
func (s *Server) Do(t testing.TB, method, path string, body io.Reader, header ...string) *Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL(path), body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// Result is the outcome of one lapis command.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

// Run runs the lapis binary with args, extra environment env and stdin.
// A command that cannot be started fails t; a non-zero exit does not.
func Run(t testing.TB, env []string, stdin string, args ...string) Result {
	t.Helper()
	return run(t, Binary(t), env, stdin, args)
}

// CLI runs a lapis admin command against the server's database (args
// followed by --data-dir and --database) with stdin.
func (s *Server) CLI(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	all := append(append([]string{}, args...), "--data-dir", s.DataDir, "--database", s.Database)
	return run(t, s.opts.Bin, nil, stdin, all)
}

func run(t testing.TB, bin string, env []string, stdin string, args []string) Result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running lapis %s: %v", strings.Join(args, " "), err)
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// MustCLI is CLI that fails t on a non-zero exit and returns stdout.
func (s *Server) MustCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := s.CLI(t, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("lapis %s: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r.Stdout
}
