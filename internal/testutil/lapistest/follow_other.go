//go:build !linux

package lapistest

import (
	"errors"
	"sync"
	"time"
)

// tickWaker wakes the follower every few milliseconds: without inotify,
// the file is polled.
type tickWaker struct {
	t    *time.Ticker
	quit chan struct{}
	once sync.Once
}

func newWaker(string) (waker, error) {
	return &tickWaker{t: time.NewTicker(5 * time.Millisecond), quit: make(chan struct{})}, nil
}

func (w *tickWaker) wait() error {
	select {
	case <-w.t.C:
		return nil
	case <-w.quit:
		return errors.New("lapistest: follower stopped")
	}
}

func (w *tickWaker) close() error {
	w.once.Do(func() {
		w.t.Stop()
		close(w.quit)
	})
	return nil
}
