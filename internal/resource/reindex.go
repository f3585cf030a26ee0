package resource

import (
	"context"
	"errors"
	"fmt"

	"github.com/lapis-health/lapis/internal/parallel"
	"github.com/lapis-health/lapis/internal/store"
)

// reindexPage is the number of resources re-indexed per store transaction.
const reindexPage = 500

// Reindex recomputes the search index rows of every current resource of
// the given types (all types when none are given) from its stored body,
// without writing new versions, and the rows kept for access filters of
// every earlier version (store.VersionIndexWriter), so that callers limited
// to a compartment or to categories see exactly the earlier versions that
// were inside them. Run it after the search-parameter extraction changes
// or an upgrade that adds kept rows. progress, when set, is called after
// each page of current resources with the running count. It returns the
// number of resources re-indexed.
func (s *Service) Reindex(ctx context.Context, types []string, progress func(n int)) (int, error) {
	if len(types) == 0 {
		types = s.reg.ResourceTypes()
	}
	total := 0
	for _, typ := range types {
		if !s.reg.IsResourceType(typ) {
			return total, fmt.Errorf("unknown resource type %q", typ)
		}
		q := &store.Query{Type: typ, Count: reindexPage, Total: store.TotalNone, Sort: []store.SortKey{{Param: "_id", Type: "token"}}}
		for {
			page, err := s.st.Search(ctx, q)
			if err != nil {
				return total, err
			}
			if len(page.Matches) > 0 {
				if err := s.reindexPage(ctx, page.Matches); err != nil {
					return total, err
				}
				total += len(page.Matches)
				if progress != nil {
					progress(total)
				}
			}
			if !page.HasMore {
				break
			}
			q.Snapshot, q.Offset = page.Snapshot, q.Offset+reindexPage
		}
		if err := s.reindexVersions(ctx, typ); err != nil {
			return total, err
		}
	}
	return total, nil
}

// reindexVersions recomputes the rows kept for access filters of every
// superseded version of typ, a page per store transaction.
func (s *Service) reindexVersions(ctx context.Context, typ string) error {
	hq := store.HistoryQuery{Type: typ, Count: reindexPage, Superseded: true}
	for {
		page, err := s.st.History(ctx, hq)
		if err != nil {
			return err
		}
		var vs []store.Resource
		for _, v := range page.Versions {
			if !v.Deleted {
				vs = append(vs, v)
			}
		}
		indexes, err := s.extractAll(len(vs), func(i int) []byte { return vs[i].Body },
			func(i int) string { return fmt.Sprintf("%s/%s version %d", vs[i].Type, vs[i].ID, vs[i].VersionID) })
		if err != nil {
			return err
		}
		if len(vs) > 0 {
			err = s.st.Update(ctx, func(tx store.Tx) error {
				vw, ok := tx.(store.VersionIndexWriter)
				if !ok {
					return errors.New("this store cannot re-index earlier versions")
				}
				for i := range vs {
					if err := vw.PutVersionIndex(ctx, vs[i].Type, vs[i].ID, vs[i].VersionID, &indexes[i]); err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		hq.Before = page.Next
	}
}

// extractAll extracts the index rows of n resources in parallel: body(i)
// is the JSON of the i-th, name(i) names it in an error.
func (s *Service) extractAll(n int, body func(i int) []byte, name func(i int) string) ([]store.Index, error) {
	indexes := make([]store.Index, n)
	errs := make([]error, n)
	parallel.For(n, func(i int) {
		res, err := DecodeJSON(body(i))
		if err != nil {
			errs[i] = err
			return
		}
		indexes[i], errs[i] = s.idx.Extract(res)
	})
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name(i), err)
		}
	}
	return indexes, nil
}

// reindexPage extracts and stores the index rows of one page of resources
// in one transaction. A resource deleted meanwhile is skipped; one updated
// meanwhile is indexed from its current version.
func (s *Service) reindexPage(ctx context.Context, rs []store.Resource) error {
	indexes, err := s.extractAll(len(rs), func(i int) []byte { return rs[i].Body },
		func(i int) string { return rs[i].Type + "/" + rs[i].ID })
	if err != nil {
		return err
	}
	return s.st.Update(ctx, func(tx store.Tx) error {
		iw, ok := tx.(store.IndexWriter)
		if !ok {
			return errors.New("this store cannot re-index")
		}
		for i := range rs {
			// A write since the page was read (the server runs meanwhile)
			// has indexed a newer version: extract that one instead, so
			// the rows always describe the current body. The read locks
			// the row on PostgreSQL until the transaction ends.
			cur, err := tx.Read(ctx, rs[i].Type, rs[i].ID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Deleted) {
				continue
			}
			if err != nil {
				return err
			}
			if cur.VersionID != rs[i].VersionID {
				res, err := DecodeJSON(cur.Body)
				if err != nil {
					return fmt.Errorf("%s/%s: %w", rs[i].Type, rs[i].ID, err)
				}
				if indexes[i], err = s.idx.Extract(res); err != nil {
					return fmt.Errorf("%s/%s: %w", rs[i].Type, rs[i].ID, err)
				}
			}
			if err := iw.PutIndex(ctx, rs[i].Type, rs[i].ID, &indexes[i]); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
}
