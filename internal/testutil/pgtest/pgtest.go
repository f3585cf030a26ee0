// Package pgtest gives tests a fresh PostgreSQL database. It connects to
// LAPIS_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres),
// starting the local Debian cluster once if nothing answers. Private gives
// a test its own throwaway server instead, for checks that stop or restart
// PostgreSQL.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// DefaultURL is the server used when LAPIS_TEST_POSTGRES is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var startOnce sync.Once

// New creates a database lapis_test_<random>, drops it when the test ends,
// and returns its URL. When PostgreSQL cannot be reached the test fails if
// the CI environment variable is set and is skipped otherwise.
func New(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("LAPIS_TEST_POSTGRES")
	if admin == "" {
		admin = DefaultURL
	}
	ctx := context.Background()
	conn, err := connect(ctx, admin)
	if err != nil {
		startOnce.Do(func() {
			_ = exec.Command("sh", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start").Run()
		})
		poll.Try(30*time.Second, func() bool {
			conn, err = connect(ctx, admin)
			return err == nil
		})
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: PostgreSQL unreachable at %s: %v", redact(admin), err)
		}
		t.Skipf("pgtest: PostgreSQL unreachable at %s: %v", redact(admin), err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "lapis_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := connect(context.Background(), admin)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func connect(ctx context.Context, u string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		c.Close(ctx)
		return nil, err
	}
	return c, nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
