package store

import "context"

// Inspector is implemented by stores that expose, for integrity checks,
// every copy they hold of a resource exactly as stored: the current row,
// every history row and the search index rows of the current row (the
// audit trail's verify compares them with the hash-chained original).
type Inspector interface {
	// Inspect returns what the store holds about each of ids of type typ,
	// read in one consistent snapshot. Ids the store holds nothing about
	// are absent from the map.
	Inspect(ctx context.Context, typ string, ids []string) (map[string]*Stored, error)
	// EachID calls fn with the id of every resource of type typ that has
	// a current row or history rows (an id may come twice), streaming;
	// an error from fn stops it and is returned.
	EachID(ctx context.Context, typ string, fn func(id string) error) error
}

// Stored is every copy a store holds of one resource.
type Stored struct {
	// Current is the current row (what read and search serve); nil when
	// there is none.
	Current *Resource
	// Mask is the current row's record of the index tables it has rows in.
	Mask int64
	// History is every history row (what vread and _history serve), by
	// version.
	History []Resource
	// Index is the search index rows attached to the current row, of the
	// resource's type (what searches match).
	Index Index
}
