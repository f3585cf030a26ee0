// Package pgtest gives tests an empty PostgreSQL database of their own.
// It connects to LAPIS_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/postgres), starting the local Debian
// cluster once if nothing answers. Private gives
// a test its own throwaway server instead, for checks that stop or restart
// PostgreSQL.
package pgtest

import (
	"context"
	"fmt"
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

// poolLock is the first key of the advisory locks (taken on the admin
// database) by which a test holds its pool database; the second key is
// the database's number.
const poolLock = 0x1a915

// New gives t an empty database of its own, lapis_test_pool_<n>, and
// returns its URL. When PostgreSQL cannot be reached the test fails if
// the CI environment variable is set and is skipped otherwise.
//
// The databases are a pool kept between tests and runs instead of one
// created and dropped per test: PostgreSQL's DROP DATABASE forces a
// checkpoint of the whole cluster (seconds each on a busy machine, and
// every other test's writes are flushed with it). A test holds its
// database by a session advisory lock on the admin connection, which
// ends with the test, or with its process if that dies; whoever takes a
// database next disconnects any session left on it and empties it (every
// schema is dropped and public recreated), so each test starts from an
// empty database as before. No two tests, in this process or another,
// ever share a database at the same time.
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
	u, err := url.Parse(admin)
	if err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	name, err := claim(ctx, conn, u)
	if err != nil {
		conn.Close(ctx)
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		// The test's sessions end with it, as DROP DATABASE … WITH
		// (FORCE) ended them; closing the admin connection releases
		// the database.
		if err := disconnect(context.Background(), conn, name); err != nil {
			t.Errorf("pgtest: release %s: %v", name, err)
		}
		conn.Close(context.Background())
	})
	u.Path = "/" + name
	return u.String()
}

// claim takes the first pool database whose lock is free on conn (the
// session keeps the lock), creating it when it does not exist yet and
// emptying it otherwise, and returns its name.
func claim(ctx context.Context, conn *pgx.Conn, admin *url.URL) (string, error) {
	for n := 0; ; n++ {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", poolLock, n).Scan(&got); err != nil {
			return "", fmt.Errorf("lock: %w", err)
		}
		if !got {
			continue
		}
		name := fmt.Sprintf("lapis_test_pool_%d", n)
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return "", err
		}
		if !exists {
			if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
				return "", fmt.Errorf("create database: %w", err)
			}
			return name, nil
		}
		if err := disconnect(ctx, conn, name); err != nil {
			return "", err
		}
		u := *admin
		u.Path = "/" + name
		db, err := connect(ctx, u.String())
		if err != nil {
			return "", fmt.Errorf("connect to %s: %w", name, err)
		}
		_, err = db.Exec(ctx, emptyDatabase)
		db.Close(ctx)
		if err != nil {
			return "", fmt.Errorf("empty %s: %w", name, err)
		}
		return name, nil
	}
}

// emptyDatabase drops every schema of the database it runs in (with what
// they hold) and recreates public as a new database has it.
const emptyDatabase = `DO $$
DECLARE s text;
BEGIN
	FOR s IN SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
	LOOP
		EXECUTE format('DROP SCHEMA %I CASCADE', s);
	END LOOP;
	CREATE SCHEMA public AUTHORIZATION pg_database_owner;
	GRANT USAGE ON SCHEMA public TO PUBLIC;
	COMMENT ON SCHEMA public IS 'standard public schema';
END $$`

// disconnect ends every other session on database name and waits for
// them to go.
func disconnect(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	return err
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
