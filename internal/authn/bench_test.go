package authn_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lapis-health/lapis/internal/authdb"
)

// BenchmarkMiddleware measures the middleware per request, in process (no
// network): a cached bearer token and a cached API key. With the
// revocation log healthy neither does a database round trip (the
// Verifier's token cache and the API-key cache answer; no write within the
// touch interval).
func BenchmarkMiddleware(b *testing.B) {
	dialects(b, func(b *testing.B, e *env) {
		tok, _ := e.token(nil)
		key := e.apiKey(authdb.APIKey{})
		for _, c := range []struct{ name, hdr, val string }{
			{"bearer-cached", "Authorization", "Bearer " + tok},
			{"apikey-cached", "X-API-Key", key},
		} {
			b.Run(c.name, func(b *testing.B) {
				req := httptest.NewRequest("GET", "/Patient/1", nil)
				req.Header.Set(c.hdr, c.val)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						w := httptest.NewRecorder()
						e.h.ServeHTTP(w, req)
						if w.Code != http.StatusOK {
							b.Fatal(w.Code)
						}
					}
				})
			})
		}
	})
}
