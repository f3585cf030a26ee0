package fhirapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

// faultyStore wraps a store and injects failures.
type faultyStore struct {
	store.Store
	failSearch  atomic.Bool
	conflicts   atomic.Int32 // Update returns ErrConflict this many times
	updateCalls atomic.Int32
}

func (f *faultyStore) Search(ctx context.Context, q *store.Query) (*store.SearchResult, error) {
	if f.failSearch.Load() {
		return nil, errors.New(`pq: relation "secret_patient_table" does not exist`)
	}
	return f.Store.Search(ctx, q)
}

func (f *faultyStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	f.updateCalls.Add(1)
	if f.conflicts.Load() > 0 {
		f.conflicts.Add(-1)
		return store.ErrConflict
	}
	return f.Store.Update(ctx, fn)
}

func TestStoreFaults(t *testing.T) {
	t.Parallel()
	var fs *faultyStore
	e := newEnv(t, func(_ *Config, rc *resourceConfig) {
		fs = &faultyStore{Store: rc.Store}
		rc.Store = fs
	})
	t.Run("store error text never reaches the client", func(t *testing.T) {
		fs.failSearch.Store(true)
		defer fs.failSearch.Store(false)
		r := e.do("GET", "/fhir/Patient?name=x", "")
		r.outcome(t, http.StatusInternalServerError)
		if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "pq:") {
			t.Fatalf("store error leaked: %s", r.body)
		}
	})
	t.Run("unversioned writes retry on conflict", func(t *testing.T) {
		fs.conflicts.Store(2)
		e.do("PUT", "/fhir/Patient/r1", `{"resourceType":"Patient","id":"r1"}`).expect(t, http.StatusCreated)
	})
	t.Run("versioned writes report 412 on conflict", func(t *testing.T) {
		fs.conflicts.Store(1)
		e.do("PUT", "/fhir/Patient/r1", `{"resourceType":"Patient","id":"r1"}`, `If-Match: W/"1"`).outcome(t, http.StatusPreconditionFailed)
	})
	t.Run("persistent conflicts give 409", func(t *testing.T) {
		fs.conflicts.Store(100)
		defer fs.conflicts.Store(0)
		e.do("PUT", "/fhir/Patient/r1", `{"resourceType":"Patient","id":"r1"}`).outcome(t, http.StatusConflict)
	})
}
