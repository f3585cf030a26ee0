package authdb

// The revocation log (table oauth_revocation_log, migration 00005) is an
// append-only record of every revocation, written in the same transaction
// as the revocation itself:
//
//	kind    subject     written by
//	token   jti         RevokeToken; RevokeFamily/refresh reuse (one row per
//	                    unexpired access token of the family)
//	family  family id   RevokeFamily, refresh-token reuse
//	apikey  key id      RevokeAPIKey, RotateAPIKey (the old key's expiry)
//	client  client id   DeleteClient
//	ratelimit client:ID or apikey:ID
//	                    SetClientRateLimit, SetAPIKeyRateLimit (migration
//	                    00009): not a revocation, a change the rate limiter's
//	                    cache of per-credential limits must re-read
//
// A RevWatcher polls it (one indexed query, WHERE seq > last, every
// 250 ms) and hands new entries to its subscribers — the oauth Verifier's
// verified-token cache and the authn middleware's API-key cache — which
// evict what they hold. The guarantee that follows:
//
//   - a revocation made through this *DB (the same process) is delivered
//     synchronously, before the revoking call returns;
//   - a revocation made by any other process on the same database is
//     delivered within one poll interval (~250 ms) plus the query time;
//   - if polling fails for longer than StaleAfter (2 s), Healthy reports
//     false and subscribers bypass their caches (every request goes to the
//     database, as before the caches existed) until a poll succeeds again,
//     at which point caches are flushed, so nothing missed meanwhile can
//     survive.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// Revocation log kinds.
const (
	RevToken  = "token"
	RevFamily = "family"
	RevAPIKey = "apikey"
	RevClient = "client"
	// RevRateLimit: a client's or API key's own rate limit changed; the
	// subject is RateLimitSubject(kind, id).
	RevRateLimit = "ratelimit"
	// RevResetSubject, under the kind RevRateLimit (the kinds are fixed
	// by a CHECK constraint), says the whole database was wiped (lapis
	// sandbox reset): every subscriber flushes its cache (the entries
	// are delivered with reset true).
	RevResetSubject = "*"
)

// LogReset appends a reset entry (RevResetSubject): every watcher on this database
// (every running instance) flushes its caches at its next poll, this
// process's at once.
func (d *DB) LogReset(ctx context.Context) error {
	if err := d.logRevocation(ctx, d.w, RevRateLimit, RevResetSubject, time.Now()); err != nil {
		return err
	}
	d.revoked(ctx)
	return nil
}

// RevEntry is one row of the revocation log.
type RevEntry struct {
	Seq     int64
	Kind    string
	Subject string
	Created time.Time
}

// revLogRetention is how long log rows are kept. A watcher that cannot
// poll for longer than StaleAfter flushes its caches on recovery, so rows
// older than that are never needed; an hour is generous.
const revLogRetention = time.Hour

type revExecer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

// logRevocation appends one entry (inside the revocation's transaction).
func (d *DB) logRevocation(ctx context.Context, ex revExecer, kind, subject string, now time.Time) error {
	if _, err := ex.ExecContext(ctx, d.rebind("INSERT INTO oauth_revocation_log (kind, subject, created_at) VALUES (?, ?, ?)"),
		kind, subject, now.Unix()); err != nil {
		return fmt.Errorf("authdb: revocation log: %w", err)
	}
	return nil
}

// commitRevocation appends kind and subject to the revocation log in tx,
// commits tx and brings this process's caches up to date at once; op
// names the change in a commit error.
func (d *DB) commitRevocation(ctx context.Context, tx *sql.Tx, kind, subject string, now time.Time, op string) error {
	if err := d.logRevocation(ctx, tx, kind, subject, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("authdb: %s: %w", op, err)
	}
	d.revoked(ctx)
	return nil
}

// logFamilyRevocation appends the family and each of its unexpired access
// tokens (inside the revocation's transaction).
func (d *DB) logFamilyRevocation(ctx context.Context, ex revExecer, familyID string, now time.Time) error {
	if err := d.logRevocation(ctx, ex, RevFamily, familyID, now); err != nil {
		return err
	}
	if _, err := ex.ExecContext(ctx, d.rebind("INSERT INTO oauth_revocation_log (kind, subject, created_at) SELECT 'token', jti, ? FROM oauth_family_access WHERE family_id = ? AND expires_at > ?"),
		now.Unix(), familyID, now.Unix()); err != nil {
		return fmt.Errorf("authdb: revocation log: %w", err)
	}
	return nil
}

// RevocationsSince returns up to limit log entries with seq > after, in
// seq order.
func (d *DB) RevocationsSince(ctx context.Context, after int64, limit int) ([]RevEntry, error) {
	out, err := database.AppendRows(ctx, nil, d.r, func(rows *sql.Rows) (e RevEntry, err error) {
		var created int64
		err = rows.Scan(&e.Seq, &e.Kind, &e.Subject, &created)
		e.Created = time.Unix(created, 0).UTC()
		return e, err
	}, d.rebind("SELECT seq, kind, subject, created_at FROM oauth_revocation_log WHERE seq > ? ORDER BY seq LIMIT ?"), after, limit)
	if err != nil {
		return nil, fmt.Errorf("authdb: read revocation log: %w", err)
	}
	return out, nil
}

// RevocationHead returns the highest seq in the log (0 when empty).
func (d *DB) RevocationHead(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := d.r.QueryRowContext(ctx, "SELECT MAX(seq) FROM oauth_revocation_log").Scan(&n); err != nil {
		return 0, fmt.Errorf("authdb: read revocation log: %w", err)
	}
	return n.Int64, nil
}

// pruneRevLog deletes log rows older than revLogRetention (best effort).
func (d *DB) pruneRevLog(ctx context.Context, now time.Time) {
	_, _ = d.w.ExecContext(ctx, d.rebind("DELETE FROM oauth_revocation_log WHERE created_at < ?"), now.Add(-revLogRetention).Unix())
}

// RevLog returns the DB's revocation-log watcher, shared by every cache of
// the process; it starts polling when the first subscriber arrives and
// stops when the DB is closed.
func (d *DB) RevLog() *RevWatcher {
	if d == nil {
		return nil
	}
	d.rev.mu.Lock()
	defer d.rev.mu.Unlock()
	if d.rev.w == nil {
		d.rev.w = NewRevWatcher(d, RevWatcherOptions{})
	}
	return d.rev.w
}

// revHolder holds the DB's watcher (created on first use).
type revHolder struct {
	mu sync.Mutex
	w  *RevWatcher
}

func (h *revHolder) get() *RevWatcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.w
}

// revoked delivers this process's own revocation at once (after its
// transaction committed), so the revoking instance never serves a stale
// cache entry. Errors are left to the background poll.
func (d *DB) revoked(ctx context.Context) {
	if w := d.rev.get(); w != nil {
		_ = w.Sync(ctx)
	}
}

func (h *revHolder) close() {
	if w := h.get(); w != nil {
		w.Close()
	}
}

// RevSource reads the revocation log (*DB).
type RevSource interface {
	RevocationsSince(ctx context.Context, after int64, limit int) ([]RevEntry, error)
	RevocationHead(ctx context.Context) (int64, error)
}

// RevWatcherOptions tunes a RevWatcher; zero values take the defaults.
type RevWatcherOptions struct {
	// Interval between polls (default 250 ms).
	Interval time.Duration
	// StaleAfter: with no successful poll for this long, Healthy is false
	// (default 2 s).
	StaleAfter time.Duration
	// GapTimeout: a gap in seq (a PostgreSQL transaction that took its
	// number but has not committed, or rolled back) is re-read for this
	// long before it is given up (default 10 s).
	GapTimeout time.Duration
	// Backlog: on start, this many entries below the head are delivered
	// again, covering transactions in flight at start (default 1000).
	Backlog int64
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// RevSubscriber receives new log entries; reset means "drop everything
// cached" (the watcher was stale and may have missed entries). It is
// called from the poller, one call at a time, and must not block.
type RevSubscriber func(entries []RevEntry, reset bool)

// RevWatcher polls the revocation log and fans entries out to
// subscribers. See the package comment in revlog.go for the guarantee.
type RevWatcher struct {
	src RevSource
	opt RevWatcherOptions

	pollMu   sync.Mutex // serialises polls and deliveries
	inited   bool
	low      int64              // every seq <= low was delivered (or given up)
	seen     map[int64]struct{} // seqs > low already delivered
	gapSince time.Time
	failing  bool

	lastOK atomic.Int64 // UnixNano of the last successful poll; 0: none

	subMu  sync.Mutex
	subs   map[int]RevSubscriber
	nextID int

	startOnce sync.Once
	started   atomic.Bool
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// revBatch is the page size of one log query.
const revBatch = 1000

// NewRevWatcher returns a watcher of src; it polls once subscribed to.
func NewRevWatcher(src RevSource, opt RevWatcherOptions) *RevWatcher {
	if opt.Interval <= 0 {
		opt.Interval = 250 * time.Millisecond
	}
	if opt.StaleAfter <= 0 {
		opt.StaleAfter = 2 * time.Second
	}
	if opt.GapTimeout <= 0 {
		opt.GapTimeout = 10 * time.Second
	}
	if opt.Backlog <= 0 {
		opt.Backlog = 1000
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &RevWatcher{src: src, opt: opt, seen: map[int64]struct{}{}, subs: map[int]RevSubscriber{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Subscribe registers fn and starts polling (the first poll runs before
// Subscribe returns). The returned func unsubscribes.
func (w *RevWatcher) Subscribe(fn RevSubscriber) (cancel func()) {
	w.subMu.Lock()
	id := w.nextID
	w.nextID++
	w.subs[id] = fn
	w.subMu.Unlock()
	w.startOnce.Do(func() {
		ctx, c := context.WithTimeout(context.Background(), w.opt.StaleAfter)
		_ = w.Sync(ctx)
		c()
		w.started.Store(true)
		go w.run()
	})
	return func() {
		w.subMu.Lock()
		delete(w.subs, id)
		w.subMu.Unlock()
	}
}

// Healthy reports whether a poll succeeded within StaleAfter. When it is
// false, caches must not be trusted: callers check the database.
func (w *RevWatcher) Healthy() bool {
	last := w.lastOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) <= w.opt.StaleAfter
}

// Close stops polling.
func (w *RevWatcher) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.startOnce.Do(func() {}) // no start after Close
	if w.started.Load() {
		<-w.done
	}
}

func (w *RevWatcher) run() {
	defer close(w.done)
	t := time.NewTicker(w.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(database.Background(context.Background()), w.opt.StaleAfter)
		_ = w.Sync(ctx)
		cancel()
	}
}

// Sync polls the log now and delivers what is new (the poller calls it
// every Interval; a revoking process calls it after its commit).
func (w *RevWatcher) Sync(ctx context.Context) error {
	w.pollMu.Lock()
	defer w.pollMu.Unlock()
	wasHealthy := w.Healthy()
	out, err := w.read(ctx)
	if err != nil {
		if !w.failing {
			w.failing = true
			w.opt.Logger.Warn("authdb: revocation log poll failed; caches are bypassed while it fails", "error", err.Error())
		}
		return err
	}
	if w.failing {
		w.failing = false
		w.opt.Logger.Info("authdb: revocation log poll recovered")
	}
	reset := !wasHealthy && w.lastOK.Load() != 0
	for _, e := range out {
		reset = reset || (e.Kind == RevRateLimit && e.Subject == RevResetSubject)
	}
	if len(out) > 0 || reset {
		w.subMu.Lock()
		subs := make([]RevSubscriber, 0, len(w.subs))
		for _, s := range w.subs {
			subs = append(subs, s)
		}
		w.subMu.Unlock()
		for _, s := range subs {
			s(out, reset)
		}
	}
	// Healthy only once the subscribers have dropped what these entries
	// (or the reset after an outage) revoke: a request that sees the feed
	// healthy must not find a stale cache entry.
	w.lastOK.Store(time.Now().UnixNano())
	return nil
}

// read fetches the entries not yet delivered (pollMu held).
func (w *RevWatcher) read(ctx context.Context) ([]RevEntry, error) {
	if !w.inited {
		head, err := w.src.RevocationHead(ctx)
		if err != nil {
			return nil, err
		}
		w.low, w.inited = max(0, head-w.opt.Backlog), true
	}
	var out []RevEntry
	cursor := w.low
	for {
		es, err := w.src.RevocationsSince(ctx, cursor, revBatch)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			cursor = e.Seq
			if _, ok := w.seen[e.Seq]; ok || e.Seq <= w.low {
				continue
			}
			w.seen[e.Seq] = struct{}{}
			out = append(out, e)
		}
		if len(es) < revBatch {
			break
		}
	}
	w.advance()
	if len(w.seen) > 0 { // a gap below delivered entries
		now := time.Now()
		if w.gapSince.IsZero() {
			w.gapSince = now
		} else if now.Sub(w.gapSince) > w.opt.GapTimeout {
			lowest := int64(-1)
			for s := range w.seen {
				if lowest < 0 || s < lowest {
					lowest = s
				}
			}
			w.low = lowest - 1
			w.gapSince = time.Time{}
			w.advance()
		}
	} else {
		w.gapSince = time.Time{}
	}
	return out, nil
}

func (w *RevWatcher) advance() {
	for {
		if _, ok := w.seen[w.low+1]; !ok {
			return
		}
		delete(w.seen, w.low+1)
		w.low++
	}
}
