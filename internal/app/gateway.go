package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/httpx"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/server"
)

// gateway is the network policy of one server.
type gateway struct {
	cfg          config.Config
	policy       *netpolicy.Policy
	clients      *netpolicy.ClientRules // per-client allow-lists and CORS origins
	metricsAllow []netip.Prefix
	mets         *metrics.Metrics
	log          *slog.Logger
}

// newGateway builds the network policy of cfg, loads the per-client rules
// from rules (the authorization database) and starts their background
// reload; it stops with ctx.
func newGateway(ctx context.Context, cfg config.Config, rules *authdb.DB, mets *metrics.Metrics, sink audit.Sink, log *slog.Logger) (*gateway, error) {
	gr, err := cfg.Gateway.Parse()
	if err != nil {
		return nil, err
	}
	metricsAllow, err := cfg.Metrics.AllowPrefixes()
	if err != nil {
		return nil, err
	}
	cr := netpolicy.NewClientRules(netRules{rules}, 0, log)
	if err := cr.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading client network rules: %w", err)
	}
	go cr.Run(database.Background(ctx))
	p, err := netpolicy.New(netpolicy.Options{
		TrustedProxies:  gr.TrustedProxies,
		ForwardedHeader: cfg.Gateway.ForwardedHeader,
		AllowIPs:        gr.AllowIPs,
		DenyUserAgents:  gr.DenyUserAgents,
		Clients:         cr,
		SelfOrigin:      cfg.Origin(),
		AuthPrefix:      cfg.FHIRPath() + "/auth/",
		Metrics:         mets,
		Audit:           sink,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	if len(gr.AllowIPs) > 0 && len(gr.TrustedProxies) == 0 && !isLoopbackAddr(cfg.Server.Addr) {
		log.Info("gateway: --allow-ip applies to the direct peer (no --trusted-proxies)")
	}
	return &gateway{cfg: cfg, policy: p, clients: cr, metricsAllow: metricsAllow, mets: mets, log: log}, nil
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// outer returns the server-level stages, in serve order: client address
// resolution, then the global allow-list and user-agent rules.
func (gw *gateway) outer() []func(http.Handler) http.Handler {
	return []func(http.Handler) http.Handler{gw.policy.Resolve, gw.policy.Global}
}

// preflight is the FHIR stage before authentication: CORS preflights
// carry no credential.
func (gw *gateway) preflight(next http.Handler) http.Handler { return gw.policy.Preflight(next) }

// principal is the FHIR stage right after authentication: it tells the
// request log the caller's client, then applies the client's allow-list
// and CORS rules.
func (gw *gateway) principal(next http.Handler) http.Handler {
	checked := gw.policy.Client(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := principal.FromContext(r.Context()); p != nil {
			httpx.SetClientID(r.Context(), p.ClientID)
		}
		checked.ServeHTTP(w, r)
	})
}

// metricsAllowed guards /metrics on the main listener: the client (as
// resolved through trusted proxies) must be on loopback or in
// --metrics-allow, and a forwarding header from a peer that is not a
// trusted proxy disqualifies the request (a local reverse proxy would
// otherwise make every caller look local).
func (gw *gateway) metricsAllowed(r *http.Request) bool {
	peer := httpx.PeerIP(r)
	if !gw.policy.IsTrustedProxy(peer) && (r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Real-IP") != "") {
		return false
	}
	a := gw.policy.ResolveIP(r)
	if !a.IsValid() {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	for _, p := range gw.metricsAllow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// serverOptions completes o with the transport settings.
func (gw *gateway) serverOptions(o server.Options) server.Options {
	c := gw.cfg
	o.TLSCertFile, o.TLSKeyFile = c.TLS.CertFile, c.TLS.KeyFile
	o.ReadHeaderTimeout, o.ReadTimeout, o.WriteTimeout, o.IdleTimeout = c.Server.ReadHeaderTimeout, c.Server.ReadTimeout, c.Server.WriteTimeout, c.Server.IdleTimeout
	o.Metrics = gw.mets
	o.MetricsAllowed = gw.metricsAllowed
	return o
}

// startMetrics opens the separate /metrics listener when --metrics-addr
// is set; it serves until ctx ends.
func (gw *gateway) startMetrics(ctx context.Context) error {
	if gw.cfg.Metrics.Addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", gw.cfg.Metrics.Addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	gw.log.Info("metrics listener", "addr", ln.Addr().String())
	go func() {
		if err := server.ServeMetrics(ctx, ln, gw.mets, gw.log); err != nil {
			gw.log.Error("metrics listener stopped", "err", err.Error())
		}
	}()
	return nil
}

// netRules is the authorization database as the gateway's per-client
// rules read it (netpolicy.RulesSource over *authdb.DB).
type netRules struct{ db *authdb.DB }

// ClientNetRules implements netpolicy.RulesSource.
func (n netRules) ClientNetRules(ctx context.Context) ([]netpolicy.Rules, error) {
	rows, err := n.db.ClientNetRules(ctx)
	out := make([]netpolicy.Rules, len(rows))
	for i, r := range rows {
		out[i] = netpolicy.Rules(r)
	}
	return out, err
}

// ClientNetRulesFor implements netpolicy.RulesSource: a client without
// rules (or unknown) has empty ones.
func (n netRules) ClientNetRulesFor(ctx context.Context, clientID string) (netpolicy.Rules, error) {
	r, err := n.db.ClientNetRulesFor(ctx, clientID)
	if errors.Is(err, authdb.ErrNotFound) {
		return netpolicy.Rules{ClientID: clientID}, nil
	}
	return netpolicy.Rules(r), err
}
