package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lapis-health/lapis/internal/database"
)

// DefaultFlushEvery is how often an Alerter with shared windows adds its
// counts to the WindowStore: the most an alert waits beyond the event
// that crossed the threshold.
const DefaultFlushEvery = time.Second

// WindowAdd is one addition to a shared alert window: the window of Key
// that began at Start (a multiple of Span since the Unix epoch).
type WindowAdd struct {
	Key   string
	Start time.Time
	Span  time.Duration
	N     int
}

// WindowStore holds alert windows every instance shares.
type WindowStore interface {
	// Add adds each N to its window and returns the windows' totals
	// after the additions, in order; each addition is atomic, so exactly
	// one caller sees a total cross a threshold.
	Add(ctx context.Context, adds []WindowAdd) ([]int64, error)
}

// sharedWindows buffers an Alerter's counts and flushes them to a
// WindowStore; when the store fails, the counts fall back to the
// instance's own windows (alerts are late or per instance, never lost).
type sharedWindows struct {
	a     *Alerter
	store WindowStore
	mu    sync.Mutex
	buf   map[string]*pendingWindow
	stop  chan struct{}
	done  chan struct{}
	// lastErr is when a flush last failed (throttles the warning).
	lastErr time.Time
}

type pendingWindow struct {
	add WindowAdd
	al  Alert
	now time.Time
}

func newSharedWindows(a *Alerter, store WindowStore, every time.Duration) *sharedWindows {
	if every <= 0 {
		every = DefaultFlushEvery
	}
	w := &sharedWindows{a: a, store: store, buf: map[string]*pendingWindow{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				w.flush()
				return
			case <-t.C:
				w.flush()
			}
		}
	}()
	return w
}

// add buffers n for the fixed window of key that holds now.
func (w *sharedWindows) add(key string, n int, now time.Time, al Alert, span time.Duration) {
	start := now.Truncate(span)
	id := fmt.Sprintf("%s\x00%d", key, start.Unix())
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.buf[id]
	if p == nil {
		if len(w.buf) >= maxWindows {
			return // bounded; the store is far behind
		}
		p = &pendingWindow{add: WindowAdd{Key: key, Start: start, Span: span}, al: al, now: now}
		w.buf[id] = p
	}
	p.add.N += n
	p.al = al
}

func (w *sharedWindows) flush() {
	w.mu.Lock()
	buf := w.buf
	w.buf = map[string]*pendingWindow{}
	w.mu.Unlock()
	if len(buf) == 0 {
		return
	}
	pend := make([]*pendingWindow, 0, len(buf))
	adds := make([]WindowAdd, 0, len(buf))
	for _, p := range buf {
		pend = append(pend, p)
		adds = append(adds, p.add)
	}
	ctx, cancel := context.WithTimeout(database.Background(context.Background()), 2*time.Second)
	defer cancel()
	totals, err := w.store.Add(ctx, adds)
	if err == nil && len(totals) != len(adds) {
		err = errors.New("audit: window store answered a wrong number of totals")
	}
	if err != nil {
		if time.Since(w.lastErr) > time.Minute {
			w.a.cfg.Logger.Warn("audit alerts: shared windows unavailable, counting in this instance", "error", err.Error())
		}
		w.lastErr = time.Now()
		for _, p := range pend {
			if total, fire := w.a.countLocal(p.add.Key, p.add.N, p.al.Threshold, p.add.Span, p.now); fire {
				p.al.Count = total
				w.a.raise(p.al)
			}
		}
		return
	}
	for i, p := range pend {
		limit := int64(p.al.Threshold)
		if totals[i] > limit && totals[i]-int64(p.add.N) <= limit {
			p.al.Count = int(totals[i])
			w.a.raise(p.al)
		}
	}
}

func (w *sharedWindows) close() {
	close(w.stop)
	<-w.done
}

// windowID names a window in a shared store: a hash of the rule key (it
// may hold client ids and addresses) and the window start.
func windowID(a WindowAdd) string {
	sum := sha256.Sum256([]byte(a.Key))
	return fmt.Sprintf("%s:%d", hex.EncodeToString(sum[:16]), a.Start.Unix())
}

// RedisWindows is a WindowStore in Redis: one counter per window
// (INCRBY), expiring a minute after its window ends.
type RedisWindows struct {
	client *redis.Client
	prefix string // after "lapis:alert:"
}

// NewRedisWindows connects lazily to the Redis at url (the rate limits'
// --redis-url).
func NewRedisWindows(url string) (*RedisWindows, error) { return NewRedisWindowsPrefix(url, "") }

// NewRedisWindowsPrefix is NewRedisWindows whose keys carry prefix after
// "lapis:alert:" (e.g. "sandbox:"), so that environments sharing one
// Redis count apart.
func NewRedisWindowsPrefix(url, prefix string) (*RedisWindows, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("invalid Redis URL")
	}
	opt.MaxRetries = 1
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
	return &RedisWindows{client: redis.NewClient(opt), prefix: prefix}, nil
}

// Add implements WindowStore.
func (r *RedisWindows) Add(ctx context.Context, adds []WindowAdd) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(adds))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range adds {
			key := "lapis:alert:" + r.prefix + windowID(a)
			cmds[i] = p.IncrBy(ctx, key, int64(a.N))
			p.ExpireAt(ctx, key, a.Start.Add(a.Span+time.Minute))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(adds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Close releases the connections.
func (r *RedisWindows) Close() error { return r.client.Close() }

// Add implements WindowStore on the database (table audit_alert_window):
// one row per window, upserted; rows of windows that ended over a minute
// ago are purged now and then.
func (d *DB) Add(ctx context.Context, adds []WindowAdd) ([]int64, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := make([]int64, len(adds))
	q := d.q(`INSERT INTO audit_alert_window (wkey, expires, count) VALUES (?, ?, ?)
		ON CONFLICT (wkey) DO UPDATE SET count = audit_alert_window.count + excluded.count RETURNING count`)
	for i, a := range adds {
		if err := tx.QueryRowContext(ctx, q, windowID(a), a.Start.Add(a.Span+time.Minute).Unix(), a.N).Scan(&out[i]); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM audit_alert_window WHERE expires < ?`), time.Now().Unix()); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// pending is the number of windows waiting for the next flush.
func (w *sharedWindows) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf)
}
