//go:build !unix

package lapistest

import "errors"

// lockFile is not available here: each test process builds its own binary.
func lockFile(string) (func(), error) { return nil, errors.New("no file locks") }

// privateDir is false here: each test process builds its own binary.
func privateDir(string) bool { return false }
