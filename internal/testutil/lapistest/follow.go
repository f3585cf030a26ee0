package lapistest

import (
	"fmt"
	"io"
	"os"
)

// follower copies what a process appends to a file into Logs, so that a
// process can write its output to the file itself (nothing between its
// write and the file) and the harness still waits on its lines.
type follower struct {
	src  *os.File // the file, read from where it ended when following began
	logs *Logs
	wake waker
	done chan struct{} // closed when run has returned
}

// waker reports changes of a followed file: wait returns when the file
// may have grown, and an error once close was called.
type waker interface {
	wait() error
	close() error
}

// follow starts copying what is appended to path, from its current end,
// into logs. The caller must call stop.
func follow(path string, logs *Logs) (*follower, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lapistest: log file: %w", err)
	}
	// Watch before reading: a write after the last read wakes wait.
	wake, err := newWaker(path)
	if err == nil {
		_, err = src.Seek(0, io.SeekEnd)
	}
	if err != nil {
		src.Close()
		if wake != nil {
			wake.close()
		}
		return nil, fmt.Errorf("lapistest: following the log file: %w", err)
	}
	fl := &follower{src: src, logs: logs, wake: wake, done: make(chan struct{})}
	go fl.run()
	return fl, nil
}

// run copies until stop closes the waker, then copies what is left.
func (fl *follower) run() {
	defer close(fl.done)
	for {
		_, _ = io.Copy(fl.logs, fl.src)
		if fl.wake.wait() != nil {
			_, _ = io.Copy(fl.logs, fl.src)
			return
		}
	}
}

// stop ends the following once the writer is done (the process exited):
// everything in the file is in logs when stop returns.
func (fl *follower) stop() {
	_ = fl.wake.close()
	<-fl.done
	_ = fl.src.Close()
}
