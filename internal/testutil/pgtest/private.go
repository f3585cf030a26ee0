package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// PrivateServer is a throwaway PostgreSQL server of one test, for checks
// that stop or restart the server (which the machine's shared cluster must
// never be). It listens on 127.0.0.1 only, with trust authentication and
// fsync on.
type PrivateServer struct {
	// URL is the postgres database's URL on this server.
	URL string

	t       testing.TB
	bin     string // the directory of initdb and pg_ctl
	data    string // the data directory
	logFile string
	opts    string // postgres options given to pg_ctl start
	asUser  bool   // run the binaries through runuser -u postgres
}

// Private initialises a PostgreSQL server in a temporary directory, starts
// it and stops it when t ends. When run as root (PostgreSQL refuses root)
// the binaries run as the postgres user through runuser. Missing binaries
// or runuser skip the test, or fail it when the CI environment variable is
// set.
func Private(t testing.TB) *PrivateServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		unavailable(t, "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	sort.Strings(bins)
	p := &PrivateServer{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("runuser"); err != nil {
			unavailable(t, "runuser not found: cannot run PostgreSQL as a non-root user")
		}
		pg, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		// The postgres user must reach dir through testing's 0700 parent.
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asUser = true
	}
	p.data = filepath.Join(dir, "data")
	sock := filepath.Join(dir, "sock")
	p.logFile = filepath.Join(dir, "postgres.log")
	p.run("mkdir", "-m", "0700", sock)
	p.run(filepath.Join(p.bin, "initdb"), "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8", "--locale=C", "-D", p.data)
	port := freePort(t)
	p.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on", port, sock)
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	p.Start()
	t.Cleanup(func() {
		// Immediate: nothing of a throwaway server needs to be kept.
		p.ctl("stop", "-m", "immediate")
	})
	return p
}

// Stop stops the server (fast shutdown: sessions are ended, in-flight
// transactions rolled back) and waits until it has.
func (p *PrivateServer) Stop() {
	p.t.Helper()
	if err := p.ctl("stop", "-m", "fast"); err != nil {
		p.t.Fatalf("pgtest: stop: %v", err)
	}
}

// Start starts the stopped server and waits until it accepts connections.
func (p *PrivateServer) Start() {
	p.t.Helper()
	if err := p.ctl("start", "-l", p.logFile, "-o", p.opts); err != nil {
		log, _ := os.ReadFile(p.logFile)
		p.t.Fatalf("pgtest: start: %v\n%s", err, log)
	}
}

// Restart stops the server (fast shutdown) and starts it again.
func (p *PrivateServer) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// ctl runs pg_ctl cmd on the data directory, waiting for it to finish.
func (p *PrivateServer) ctl(cmd string, args ...string) error {
	out, err := p.command(filepath.Join(p.bin, "pg_ctl"), append([]string{cmd, "-w", "-D", p.data}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// run runs name with args as the server's user and fails t on an error.
func (p *PrivateServer) run(name string, args ...string) {
	p.t.Helper()
	if out, err := p.command(name, args...).CombinedOutput(); err != nil {
		p.t.Fatalf("pgtest: %s: %v: %s", filepath.Base(name), err, out)
	}
}

func (p *PrivateServer) command(name string, args ...string) *exec.Cmd {
	if p.asUser {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("pgtest: " + why)
	}
	t.Skip("pgtest: " + why)
}
