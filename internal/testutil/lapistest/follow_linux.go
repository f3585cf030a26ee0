package lapistest

import (
	"os"
	"syscall"
)

// inotifyWaker waits for modifications of a file with inotify.
type inotifyWaker struct {
	f   *os.File // the non-blocking inotify descriptor: Close ends a Read
	buf []byte
}

func newWaker(path string) (waker, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_MODIFY); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch", err)
	}
	return &inotifyWaker{f: os.NewFile(uintptr(fd), "inotify"), buf: make([]byte, 4096)}, nil
}

// wait reads (and drops) the pending events, blocking until there is one.
func (w *inotifyWaker) wait() error {
	_, err := w.f.Read(w.buf)
	return err
}

func (w *inotifyWaker) close() error { return w.f.Close() }
