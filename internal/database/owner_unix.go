//go:build unix

package database

import (
	"errors"
	"os"
	"syscall"
)

// matchOwner gives file the owner of like when this process runs as root
// and they differ (nothing when either file is missing).
func matchOwner(file, like string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	want, err := os.Stat(like)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	got, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	w, ok1 := want.Sys().(*syscall.Stat_t)
	g, ok2 := got.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || (w.Uid == g.Uid && w.Gid == g.Gid) {
		return nil
	}
	return os.Chown(file, int(w.Uid), int(w.Gid))
}
