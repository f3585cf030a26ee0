package profile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"github.com/lapis-health/lapis/client"
)

// DefaultInterval is how often a Watcher checks the file when NewWatcher is
// given no interval.
const DefaultInterval = 2 * time.Second

// Watcher keeps a profiles file's configuration current: it re-reads the
// file every interval and, when the content changed and is valid, swaps the
// configuration in. An invalid edit keeps the previous configuration and is
// reported by Err (and the OnError hook). Clients built by Client are reused
// until their profile or its resolved secrets change, so tokens are reused
// as long as possible. It needs no file-notification support: the file is
// small and polled.
type Watcher struct {
	path     string
	interval time.Duration
	onError  func(error)
	onReload func(*Config)

	mu      sync.Mutex
	cfg     *Config
	sum     [sha256.Size]byte
	lastErr error
	clients map[string]cachedClient

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type cachedClient struct {
	fingerprint [sha256.Size]byte
	client      *client.Client
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// OnError sets a function called (from the polling goroutine) with each
// failed reload; the previous configuration stays in use.
func OnError(f func(error)) WatcherOption { return func(w *Watcher) { w.onError = f } }

// OnReload sets a function called (from the polling goroutine) after a
// changed file was loaded.
func OnReload(f func(*Config)) WatcherOption { return func(w *Watcher) { w.onReload = f } }

// NewWatcher loads path ("" = DefaultPath) and starts checking it every
// interval (0 = DefaultInterval) until Close. The first load must succeed.
func NewWatcher(path string, interval time.Duration, opts ...WatcherOption) (*Watcher, error) {
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Watcher{path: path, interval: interval, clients: map[string]cachedClient{},
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	if _, err := w.Check(); err != nil {
		return nil, err
	}
	go w.loop()
	return w, nil
}

func (w *Watcher) loop() {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			changed, err := w.Check()
			switch {
			case err != nil && w.onError != nil:
				w.onError(err)
			case changed && w.onReload != nil:
				w.onReload(w.Config())
			}
		}
	}
}

// Check reads the file now and reports whether a changed, valid
// configuration was swapped in. On error the previous configuration stays.
// The polling goroutine calls it; callers may too (e.g. on SIGHUP).
func (w *Watcher) Check() (bool, error) {
	b, err := readFile(w.path)
	sum := sha256.Sum256(b)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg != nil && bytes.Equal(sum[:], w.sum[:]) {
		return false, nil // unchanged (an invalid content is reported once)
	}
	w.sum = sum
	var cfg *Config
	if err == nil {
		cfg, err = Parse(b)
		if err != nil {
			err = errors.New(w.path + ": " + err.Error())
		}
	}
	if err != nil {
		w.lastErr = err
		return false, err
	}
	cfg.setDir(filepath.Dir(w.path))
	w.cfg, w.sum, w.lastErr = cfg, sum, nil
	return true, nil
}

// Config returns the current configuration (do not modify it).
func (w *Watcher) Config() *Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// Err returns the error of the last reload, or nil when the current file
// is the one in use.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Current returns the named profile ("" = the default) of the current
// configuration.
func (w *Watcher) Current(name string) (*Profile, error) {
	return w.Config().Get(name)
}

// Client returns a client for the named profile ("" = the default). The
// same *client.Client is returned until the profile or one of its resolved
// secrets changes, so its cached tokens keep being reused. Each call
// resolves the profile's secrets (an environment lookup or a small file
// read) to notice rotations: call it per unit of work and share the client
// within it.
func (w *Watcher) Client(ctx context.Context, name string) (*client.Client, error) {
	p, err := w.Current(name)
	if err != nil {
		return nil, err
	}
	fp, err := p.fingerprint()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	cc, ok := w.clients[p.Name]
	w.mu.Unlock()
	if ok && cc.fingerprint == fp {
		return cc.client, nil
	}
	c, err := p.Client(ctx)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur, ok := w.clients[p.Name]; ok && cur.fingerprint == fp {
		return cur.client, nil // another goroutine built it first
	}
	w.clients[p.Name] = cachedClient{fingerprint: fp, client: c}
	return c, nil
}

// Close stops the polling goroutine and waits for it.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
