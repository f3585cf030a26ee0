package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkReadCachedToken measures the client's overhead per read with a
// cached OAuth token against a local server.
func BenchmarkReadCachedToken(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":3600}`))
			return
		}
		w.Header().Set("Content-Type", fhirJSON)
		w.Write([]byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05Z"}}`))
	}))
	defer srv.Close()
	auth := ClientCredentials(ClientCredentialsConfig{TokenURL: srv.URL + "/token", ClientID: "a", ClientSecret: "b"})
	c, err := New(srv.URL+"/fhir", WithAuth(auth))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Read(context.Background(), "Patient", "p1"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if auth.TokenRequests() != 1 {
		b.Fatalf("token requests = %d", auth.TokenRequests())
	}
}
