package lapistest

import (
	"bytes"
	"context"
	"strings"
	"sync"
)

// Logs collects what a process writes to stderr (and stdout). It is safe
// for the writing process and concurrent readers, and lets a reader wait
// for a line instead of polling.
type Logs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed (and replaced) on every write
}

// Write appends p and wakes the waiters.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return n, err
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// snapshot returns the text from offset on and a channel closed at the
// next write.
func (l *Logs) snapshot(offset int) (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	b := l.buf.Bytes()
	if offset > len(b) {
		offset = len(b)
	}
	return string(b[offset:]), l.changed
}

// len is the number of bytes written so far.
func (l *Logs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

// WaitLine waits until a complete line (ending in a newline) written at
// or after byte offset contains every one of subs, and returns it; it
// gives up when ctx ends or stop is closed (e.g. the process exited) and
// returns false. Offset 0 searches everything written so far.
func (l *Logs) WaitLine(ctx context.Context, stop <-chan struct{}, offset int, subs ...string) (string, bool) {
	for {
		text, changed := l.snapshot(offset)
		if line, ok := findLine(text, subs); ok {
			return line, true
		}
		select {
		case <-changed:
		case <-stop:
			// The writer may have finished with the line we wait for.
			text, _ = l.snapshot(offset)
			return findLine(text, subs)
		case <-ctx.Done():
			return "", false
		}
	}
}

// findLine returns the first complete line of text containing all subs.
func findLine(text string, subs []string) (string, bool) {
	for {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			return "", false
		}
		line := text[:i]
		text = text[i+1:]
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			return line, true
		}
	}
}
