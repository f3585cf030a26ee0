package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// PutPatient stores version 1 of Patient/id indexed by its gender token
// (a fixture for the dialects' own tests of how searches run).
func PutPatient(t testing.TB, s store.Store, id, gender string) {
	t.Helper()
	ctx := context.Background()
	w := &store.Write{Type: "Patient", ID: id, Version: 1, LastUpdated: time.UnixMilli(1700000000123).UTC(), Method: "PUT",
		Body: []byte(`{"resourceType":"Patient","id":"` + id + `"}`), Index: store.Index{Tokens: []store.TokenRow{{Param: "gender", Code: gender}}}}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) }); err != nil {
		t.Fatal(err)
	}
}
