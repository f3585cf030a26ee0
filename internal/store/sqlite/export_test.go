package sqlite

// StopSnapshotWriter stops the background snapshot writer: from then on a
// search stores its paging snapshot before it returns.
func (s *Store) StopSnapshotWriter() { s.stopSnapshots() }
