// Package redistest starts a private, throw-away redis-server for a test:
// its own free port, no persistence, shut down when the test ends. When
// redis-server is not installed the test is skipped, or fails when the CI
// environment variable is "true" (CI installs it).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// Server is a running private redis-server.
type Server struct {
	// Addr is HOST:PORT.
	Addr string
	// URL is redis://HOST:PORT/0.
	URL string

	t       testing.TB
	pidfile string
	pid     int
	stopped bool
	argv    []string // the redis-server command line, for Restart
}

// Start starts redis-server on a free loopback port and waits until it
// answers PING; it is shut down on t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redistest: redis-server not found (CI installs it: apt-get install redis-server)")
		}
		t.Skip("redistest: redis-server not installed (apt-get install redis-server)")
	}
	dir := t.TempDir()
	var lastErr error
	for range 3 {
		port := freePort(t)
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, pidfile: filepath.Join(dir, "redis.pid")}
		s.URL = "redis://" + s.Addr + "/0"
		s.argv = []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "yes", "--pidfile", s.pidfile, "--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			lastErr = fmt.Errorf("%v: %s", err, out)
			continue
		}
		t.Cleanup(s.Stop)
		if err := s.waitPing(5 * time.Second); err != nil {
			lastErr = err
			s.Stop()
			continue
		}
		s.pid = s.readPID()
		return s
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// Stop shuts the server down (idempotent). Tests call it to simulate an
// outage; it also runs on cleanup.
func (s *Server) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	pid := s.pid
	if pid == 0 {
		pid = s.readPID()
	}
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// The daemon is not our child: watch for its pid to go.
	if !poll.Try(5*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Restart starts a stopped server again on the same port (empty: no
// persistence) and waits until it answers PING; it fails the test when
// it cannot.
func (s *Server) Restart() {
	s.t.Helper()
	if !s.stopped {
		return
	}
	if out, err := exec.Command(s.argv[0], s.argv[1:]...).CombinedOutput(); err != nil {
		s.t.Fatalf("redistest: restarting redis-server: %v: %s", err, out)
	}
	s.stopped = false
	if err := s.waitPing(5 * time.Second); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	s.pid = s.readPID()
}

func (s *Server) readPID() int {
	b, err := os.ReadFile(s.pidfile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Command sends one inline command (e.g. "FLUSHALL") and returns the
// first line of the reply.
func (s *Server) Command(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func (s *Server) waitPing(d time.Duration) error {
	var err error
	if poll.Try(d, func() bool {
		var reply string
		reply, err = s.Command("PING")
		// The pid file may lag the first PONG by a moment.
		return err == nil && reply == "+PONG" && s.readPID() != 0
	}) {
		return nil
	}
	return fmt.Errorf("redis-server did not answer PING (and write its pid file) within %s: %v", d, err)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
