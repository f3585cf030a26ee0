package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/apikey"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/authn"
	"github.com/lapis-health/lapis/internal/cli"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/oauth/keys"
	"github.com/lapis-health/lapis/internal/testutil/dbtest"
	"github.com/lapis-health/lapis/internal/testutil/pgtest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// countingDB counts the database reads of the hot path.
type countingDB struct {
	*authdb.DB
	keyLookups, revChecks atomic.Int32
}

func (c *countingDB) APIKeyByHash(ctx context.Context, h []byte) (*authdb.APIKey, error) {
	c.keyLookups.Add(1)
	return c.DB.APIKeyByHash(ctx, h)
}

func (c *countingDB) Revoked(ctx context.Context, jti string) (bool, error) {
	c.revChecks.Add(1)
	return c.DB.Revoked(ctx, jti)
}

// TokenRevoked is the check the Verifier makes (the token's jti and its
// client's suspension, in one query).
func (c *countingDB) TokenRevoked(ctx context.Context, jti, clientID string) (bool, error) {
	c.revChecks.Add(1)
	return c.DB.TokenRevoked(ctx, jti, clientID)
}

// instance is one server process: its own *authdb.DB (pools, revocation
// log watcher), Verifier and middleware, on a shared database.
type instance struct {
	t  *testing.T
	db *countingDB
	km *keys.Manager
	h  http.Handler
}

func newInstance(t *testing.T, url, dir string, feed oauth.RevocationFeed) *instance {
	t.Helper()
	ctx := context.Background()
	db, err := authdb.Open(ctx, url, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	km, err := keys.Open(ctx, db, keys.Options{KEKFile: filepath.Join(dir, keys.KEKFile)})
	if err != nil {
		t.Fatal(err)
	}
	c := &countingDB{DB: db}
	v := oauth.NewVerifier(oauth.VerifierConfig{Issuer: issuer, Audience: issuer, Keys: km, Revocations: c, Feed: feed})
	mw := authn.New(authn.Config{Verifier: v, APIKeys: c, Revocations: feed, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &instance{t: t, db: c, km: km, h: mw(http.HandlerFunc(echo))}
}

func (in *instance) status(hdr, val string) int {
	req := httptest.NewRequest("GET", "/Patient/1", nil)
	req.Header.Set(hdr, val)
	w := httptest.NewRecorder()
	in.h.ServeHTTP(w, req)
	return w.Code
}

func (in *instance) want(hdr, val string, code int) {
	in.t.Helper()
	if got := in.status(hdr, val); got != code {
		in.t.Fatalf("%s: status %d, want %d", hdr, got, code)
	}
}

// eventually waits until the instance answers code (the other instance
// learns of a revocation at its next poll of the revocation log, every
// 250 ms; TestRevWatcherInterval in authdb checks that on a fake clock).
func (in *instance) eventually(hdr, val string, code int) {
	in.t.Helper()
	poll.Until(in.t, time.Minute, fmt.Sprintf("%s: status %d", hdr, code), func() bool { return in.status(hdr, val) == code })
}

func (in *instance) token(jti string) string {
	in.t.Helper()
	now := time.Now()
	c := oauth.AccessClaims{Issuer: issuer, Audience: issuer, Subject: "sub-1", ClientID: "app", Scope: "system/*.rs",
		IssuedAt: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: jti}
	b, _ := json.Marshal(c)
	tok, err := in.km.Sign(context.Background(), keys.AccessTokenAlg, oauth.AccessTokenType, b)
	if err != nil {
		in.t.Fatal(err)
	}
	return "Bearer " + tok
}

func (in *instance) apiKey(id string) string {
	in.t.Helper()
	key, prefix, h, err := apikey.New()
	if err != nil {
		in.t.Fatal(err)
	}
	if err := in.db.CreateAPIKey(context.Background(), &authdb.APIKey{ID: id, Name: "t", Scopes: []string{"system/*.rs"}, Hash: h, Prefix: prefix}); err != nil {
		in.t.Fatal(err)
	}
	return key
}

// sharedDBs runs f as a subtest on each dialect with a database URL (""
// for SQLite) and data directory that several instances open.
func sharedDBs(t *testing.T, f func(t *testing.T, url, dir string)) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dir, url := t.TempDir(), ""
			if dialect == "postgres" {
				url = pgtest.New(t)
			}
			f(t, url, dir)
		})
	}
}

// TestRevocationSeenByOtherInstance: with warm caches (no database read
// per request), a token or API key revoked by one instance is rejected by
// that instance at once and by another at its next poll of the
// revocation log (the poll interval itself is checked on a fake clock by
// authdb's TestRevWatcherInterval).
func TestRevocationSeenByOtherInstance(t *testing.T) {
	sharedDBs(t, func(t *testing.T, url, dir string) {
		a := newInstance(t, url, dir, nil)
		b := newInstance(t, url, dir, nil)
		tok := a.token("jti-x1")
		key := a.apiKey("ak_x1")
		for range 3 {
			a.want("Authorization", tok, 200)
			b.want("Authorization", tok, 200)
			a.want(authn.HeaderAPIKey, key, 200)
			b.want(authn.HeaderAPIKey, key, 200)
		}
		if n, m := b.db.revChecks.Load(), b.db.keyLookups.Load(); n != 1 || m != 1 {
			t.Fatalf("warm cache still reads the database: %d revocation checks, %d key lookups for 3 requests each", n, m)
		}

		ctx := context.Background()
		if err := a.db.RevokeToken(ctx, "jti-x1", time.Now().Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		a.want("Authorization", tok, 401) // same instance: at once
		b.eventually("Authorization", tok, 401)

		if err := a.db.RevokeAPIKey(ctx, "ak_x1", time.Now()); err != nil {
			t.Fatal(err)
		}
		a.want(authn.HeaderAPIKey, key, 401)
		b.eventually(authn.HeaderAPIKey, key, 401)

		// Rotation with no grace ends the old key everywhere.
		key2 := a.apiKey("ak_x2")
		b.want(authn.HeaderAPIKey, key2, 200)
		_, prefix, h, _ := apikey.New()
		if err := a.db.RotateAPIKey(ctx, "ak_x2", &authdb.APIKey{ID: "ak_x3", Hash: h, Prefix: prefix}, time.Now(), time.Now()); err != nil {
			t.Fatal(err)
		}
		b.eventually(authn.HeaderAPIKey, key2, 401)
	})
}

// flakySource is a revocation log that can be made unreachable.
type flakySource struct {
	*authdb.DB
	down atomic.Bool
}

var errDown = errors.New("log unreachable")

func (f *flakySource) RevocationsSince(ctx context.Context, after int64, limit int) ([]authdb.RevEntry, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.DB.RevocationsSince(ctx, after, limit)
}

func (f *flakySource) RevocationHead(ctx context.Context) (int64, error) {
	if f.down.Load() {
		return 0, errDown
	}
	return f.DB.RevocationHead(ctx)
}

// TestCacheBypassWhenPollerFails: when the revocation log cannot be read,
// the caches are bypassed (every request reads the database), so a
// revocation the poller cannot see still takes effect; on recovery the
// caches are used again.
func TestCacheBypassWhenPollerFails(t *testing.T) {
	sharedDBs(t, func(t *testing.T, url, dir string) {
		a := newInstance(t, url, dir, nil)
		bdb, err := authdb.Open(context.Background(), url, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bdb.Close() })
		src := &flakySource{DB: bdb}
		feed := authdb.NewRevWatcher(src, authdb.RevWatcherOptions{Interval: 20 * time.Millisecond, StaleAfter: 300 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		t.Cleanup(feed.Close)
		b := newInstance(t, url, dir, feed)

		tok, key := a.token("jti-y1"), a.apiKey("ak_y1")
		for range 3 {
			b.want("Authorization", tok, 200)
			b.want(authn.HeaderAPIKey, key, 200)
		}
		if n, m := b.db.revChecks.Load(), b.db.keyLookups.Load(); n != 1 || m != 1 {
			t.Fatalf("healthy feed: %d revocation checks, %d key lookups, want 1 each", n, m)
		}

		src.down.Store(true)
		poll.Until(t, time.Minute, "feed unhealthy after the log became unreachable", func() bool { return !feed.Healthy() })
		n0, m0 := b.db.revChecks.Load(), b.db.keyLookups.Load()
		b.want("Authorization", tok, 200)
		b.want(authn.HeaderAPIKey, key, 200)
		if n, m := b.db.revChecks.Load(), b.db.keyLookups.Load(); n != n0+1 || m != m0+1 {
			t.Fatalf("stale feed: caches not bypassed (%d→%d revocation checks, %d→%d key lookups)", n0, n, m0, m)
		}
		// Revocations the poller cannot see take effect at once.
		ctx := context.Background()
		if err := a.db.RevokeToken(ctx, "jti-y1", time.Now().Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := a.db.RevokeAPIKey(ctx, "ak_y1", time.Now()); err != nil {
			t.Fatal(err)
		}
		b.want("Authorization", tok, 401)
		b.want(authn.HeaderAPIKey, key, 401)

		src.down.Store(false)
		poll.Until(t, time.Minute, "feed healthy again", feed.Healthy)
		b.want("Authorization", tok, 401)
		b.want(authn.HeaderAPIKey, key, 401)
		key2 := a.apiKey("ak_y2")
		b.want(authn.HeaderAPIKey, key2, 200)
		m1 := b.db.keyLookups.Load()
		b.want(authn.HeaderAPIKey, key2, 200)
		if m := b.db.keyLookups.Load(); m != m1 {
			t.Fatalf("recovered feed: key not cached (%d→%d lookups)", m1, m)
		}
	})
}

func runCLI(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errb strings.Builder
	if code := cli.Main(args, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("lapis %v: %d %s", args, code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil {
		t.Fatalf("lapis %v: %q", args, out.String())
	}
	return m
}

// TestCLIRevocationSeenByRunningMiddleware: lapis apikey rotate and
// revoke, run as separate commands, reach a running middleware whose
// cache holds the key, at its next poll of the revocation log.
func TestCLIRevocationSeenByRunningMiddleware(t *testing.T) {
	sharedDBs(t, func(t *testing.T, url, dir string) {
		dbf := []string{"--data-dir", dir}
		if url != "" {
			dbf = append(dbf, "--database", url)
		}
		srv := newInstance(t, url, dir, nil)
		m := runCLI(t, append([]string{"apikey", "create", "--name", "etl", "--scope", "system/*.rs", "--json"}, dbf...)...)
		key, id := m["key"].(string), m["id"].(string)
		srv.want(authn.HeaderAPIKey, key, 200)
		srv.want("Authorization", "Bearer "+key, 200)
		if n := srv.db.keyLookups.Load(); n != 1 {
			t.Fatalf("%d lookups for a cached key", n)
		}

		m = runCLI(t, append([]string{"apikey", "rotate", id, "--grace", "0s", "--json"}, dbf...)...)
		key2, id2 := m["key"].(string), m["id"].(string)
		srv.eventually(authn.HeaderAPIKey, key, 401)
		srv.want(authn.HeaderAPIKey, key2, 200)

		runCLI(t, append([]string{"apikey", "revoke", id2, "--json"}, dbf...)...)
		srv.eventually(authn.HeaderAPIKey, key2, 401)
	})
}
