//go:build !unix

package database

// matchOwner does nothing where files have no Unix owner.
func matchOwner(file, like string) error { return nil }
