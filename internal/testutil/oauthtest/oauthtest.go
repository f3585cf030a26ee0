// Package oauthtest serves an authorization server (internal/oauth) on a
// local test server.
package oauthtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lapis-health/lapis/internal/oauth"
)

// Serve starts an authorization server on a fresh local test server,
// closed when tb ends. Its issuer is the server's URL followed by path
// (e.g. "/fhir"); config returns the server's configuration for that
// issuer, and setup (if any) runs on the server before it is mounted.
func Serve(tb testing.TB, path string, config func(issuer string) oauth.Config, setup ...func(*oauth.Server)) (*oauth.Server, *httptest.Server, string) {
	tb.Helper()
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String() + path
	srv, err := oauth.New(config(issuer))
	if err != nil {
		ts.Close()
		tb.Fatal(err)
	}
	for _, f := range setup {
		f(srv)
	}
	mux := http.NewServeMux()
	srv.Mount(mux)
	ts.Config.Handler = mux
	ts.Start()
	tb.Cleanup(ts.Close)
	return srv, ts, issuer
}

// Register registers a client on store (oauth.RegisterClient), failing tb
// when that fails.
func Register(tb testing.TB, store oauth.ClientCreator, reg oauth.Registration) *oauth.Registered {
	tb.Helper()
	out, err := oauth.RegisterClient(context.Background(), store, reg)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
