package app

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/config"
)

// listenConfig listens on a free local port and returns the listener, its
// root URL and a serve configuration for it: the data in a temporary
// directory, the built-in sandbox dataset not loaded.
func listenConfig(t testing.TB) (net.Listener, string, config.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.ServeDefaults()
	cfg.Sandbox.Load = false
	cfg.Server.Addr = ln.Addr().String()
	cfg.Database.DataDir = t.TempDir()
	return ln, "http://" + ln.Addr().String(), cfg
}

// serveBackground serves srv on ln until the returned shutdown is called,
// at the latest when t ends. shutdown (which does its work once) stops
// serving, reports an error of Serve and closes srv.
func serveBackground(t *testing.T, srv *Server, ln net.Listener) (shutdown func()) {
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	var once sync.Once
	shutdown = func() {
		once.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(shutdown)
	return shutdown
}
