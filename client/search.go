package client

import (
	"context"
	"errors"
	"iter"
	"net/url"
)

// SearchPage runs a search and returns its first page: GET [base]/typ?q,
// or a search across all types when typ is "". Fetch further pages with
// NextPage, or use Search or SearchAll to walk them all.
func (c *Client) SearchPage(ctx context.Context, typ string, q url.Values) (*Bundle, error) {
	if typ == "" {
		return c.getBundle(ctx, c.path(q))
	}
	if err := checkType(typ); err != nil {
		return nil, err
	}
	return c.getBundle(ctx, c.path(q, typ))
}

// SearchIterator walks the matches of a search across pages, following
// the Bundles' "next" links. Included resources (search mode "include")
// and OperationOutcomes are skipped; the pages are available through
// Page. Use it as:
//
//	it := c.Search(ctx, "Patient", url.Values{"name": {"chalmers"}})
//	for it.Next(ctx) {
//		r := it.Resource()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type SearchIterator struct {
	c     *Client
	typ   string
	q     url.Values
	page  *Bundle
	items []*Resource
	cur   *Resource
	err   error
	start bool
	pages int
	// seen holds the next links followed: one that comes again (a server
	// whose links go round in a cycle) ends the iteration with an error
	// instead of fetching the same pages for ever.
	seen map[string]bool
}

// Search returns an iterator over every match of a search (see
// SearchPage). No request is sent until the first call to Next.
func (c *Client) Search(ctx context.Context, typ string, q url.Values) *SearchIterator {
	_ = ctx // requests use the context passed to Next
	return &SearchIterator{c: c, typ: typ, q: q}
}

// Next advances to the next match, fetching the next page when needed; it
// returns false at the end or on an error (see Err).
func (it *SearchIterator) Next(ctx context.Context) bool {
	if it.err != nil {
		return false
	}
	for len(it.items) == 0 {
		var (
			b   *Bundle
			err error
		)
		switch {
		case !it.start:
			it.start = true
			b, err = it.c.SearchPage(ctx, it.typ, it.q)
		case it.page == nil || it.page.Links["next"] == "":
			it.cur = nil
			return false
		case it.seen[it.page.Links["next"]]:
			it.err, it.cur = errors.New("fhir client: the search's next link leads to a page already fetched"), nil
			return false
		default:
			if it.seen == nil {
				it.seen = make(map[string]bool)
			}
			it.seen[it.page.Links["next"]] = true
			b, err = it.c.NextPage(ctx, it.page)
		}
		if err != nil {
			it.err, it.cur = err, nil
			return false
		}
		it.page, it.items = b, b.Resources()
		it.pages++
	}
	it.cur, it.items = it.items[0], it.items[1:]
	return true
}

// Resource returns the current match, nil before the first Next or after
// the end.
func (it *SearchIterator) Resource() *Resource { return it.cur }

// Page returns the Bundle of the current page (with its included
// resources), nil before the first Next.
func (it *SearchIterator) Page() *Bundle { return it.page }

// Pages returns how many pages have been fetched.
func (it *SearchIterator) Pages() int { return it.pages }

// Err returns the error that stopped the iteration, nil at a normal end.
func (it *SearchIterator) Err() error { return it.err }

// SearchAll returns a Go iterator over every match of a search across
// pages:
//
//	for r, err := range c.SearchAll(ctx, "Observation", q) {
//		if err != nil { return err }
//		...
//	}
//
// An error is yielded once, as the last pair.
func (c *Client) SearchAll(ctx context.Context, typ string, q url.Values) iter.Seq2[*Resource, error] {
	return func(yield func(*Resource, error) bool) {
		it := c.Search(ctx, typ, q)
		for it.Next(ctx) {
			if !yield(it.Resource(), nil) {
				return
			}
		}
		if err := it.Err(); err != nil {
			yield(nil, err)
		}
	}
}
