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
	// IDs lists, in ascending byte order, up to limit ids greater than
	// after of the resources of type typ that have a current row or a
	// history row (for keyset paging: pass the last id as after).
	IDs(ctx context.Context, typ, after string, limit int) ([]string, error)
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
