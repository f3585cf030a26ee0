package audit

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/store"
)

type nopStore struct{}

func (nopStore) Update(ctx context.Context, fn func(tx store.Tx) error) error { return nil }

// BenchmarkWriter measures the audit pipeline on SQLite without the FHIR
// store's own writes: render, hash, group commit, and the copy's decode
// and index extraction.
func BenchmarkWriter(b *testing.B) {
	e := open(b, "sqlite:"+b.TempDir()+"/l.db", func(c *Config) { c.Store = nopStore{} })
	ev := readEvent(1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.rec.Record(context.Background(), ev)
	}
	e.rec.Close()
}

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, Event)       {}
func (nopRecorder) Commit(context.Context, Event) error { return nil }

// BenchmarkStageRead measures what the audit stage adds to a read on the
// request path (classification, response wrapper, event), the handler
// and the recorder being no-ops.
func BenchmarkStageRead(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1500)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", inner}, {"audited", routedStage(StageConfig{Recorder: nopRecorder{}})(inner)}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := principal.NewContext(context.Background(), &principal.Principal{ClientID: "c", TokenID: "k", Method: "apikey"})
			req := httptest.NewRequest("GET", "/fhir/Patient/123", nil).WithContext(ctx)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				tc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
