package bulk

import (
	"context"
	"strings"
)

// seen is the set of resources ("Type/id") one attempt of a job has
// written, where two of its searches may find the same resource: several
// _typeFilters of one type, the compartments of several patients, one
// Provenance the latest of several resources. It is kept in the database
// (export_seen), not in memory, so that an export of millions of
// resources holds no per-resource state.
type seen struct {
	j       *jobs
	job     string
	attempt int64
}

// seenBatch is the most keys one statement records.
const seenBatch = 500

// add records keys and returns those that were not recorded before.
// Keys must be distinct.
func (s *seen) add(ctx context.Context, keys []string) (map[string]bool, error) {
	fresh := make(map[string]bool, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), seenBatch)
		var q strings.Builder
		args := make([]any, 0, 3*n)
		q.WriteString("INSERT INTO export_seen (job, attempt, key) VALUES ")
		for i, k := range keys[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, s.job, s.attempt, k)
		}
		q.WriteString(" ON CONFLICT DO NOTHING RETURNING key")
		rows, err := s.j.w.QueryContext(ctx, s.j.q(q.String()), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return nil, err
			}
			fresh[k] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		keys = keys[n:]
	}
	return fresh, nil
}

// clearSeen forgets what the attempts of job other than keep wrote (a
// takeover: those attempts lost the job).
func (j *jobs) clearSeen(ctx context.Context, job string, keep int64) error {
	_, err := j.w.ExecContext(ctx, j.q("DELETE FROM export_seen WHERE job = ? AND attempt <> ?"), job, keep)
	return err
}

// dropSeen forgets what attempt of job wrote (the attempt ended).
func (j *jobs) dropSeen(ctx context.Context, job string, attempt int64) error {
	_, err := j.w.ExecContext(ctx, j.q("DELETE FROM export_seen WHERE job = ? AND attempt = ?"), job, attempt)
	return err
}
