package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/config"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/netpolicy"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/server"
)

// gatewayFlags are the network, transport and operations flags of
// lapis serve (embedded in serveCmd).
type gatewayFlags struct {
	TLSCert           string        `name:"tls-cert" env:"LAPIS_TLS_CERT" help:"TLS certificate file (PEM, with intermediates); with --tls-key, serve HTTPS only. Reloaded when the file changes." placeholder:"FILE"`
	TLSKey            string        `name:"tls-key" env:"LAPIS_TLS_KEY" help:"TLS private key file (PEM)." placeholder:"FILE"`
	TrustedProxies    []string      `name:"trusted-proxies" env:"LAPIS_TRUSTED_PROXIES" sep:"," help:"CIDRs of reverse proxies whose forwarding header gives the client address (comma-separated or repeated)." placeholder:"CIDR"`
	ForwardedHeader   string        `name:"forwarded-header" env:"LAPIS_FORWARDED_HEADER" default:"X-Forwarded-For" enum:"X-Forwarded-For,Forwarded" help:"The header the trusted proxies set: X-Forwarded-For or Forwarded (RFC 7239); the other is ignored."`
	AllowIP           []string      `name:"allow-ip" env:"LAPIS_ALLOW_IP" sep:"," help:"Global allow-list for the FHIR API and the authorization endpoints (CIDRs, repeatable; empty allows all)." placeholder:"CIDR"`
	DenyUserAgent     []string      `name:"deny-user-agent" env:"LAPIS_DENY_USER_AGENT" sep:"none" help:"Refuse requests whose User-Agent matches this regular expression (case-insensitive, repeatable)." placeholder:"REGEX"`
	UserAgentDefaults bool          `name:"default-deny-user-agents" env:"LAPIS_DEFAULT_DENY_USER_AGENTS" default:"true" negatable:"" help:"Also refuse well-known scanner user agents (sqlmap, nikto, nmap, nuclei, ...)."`
	ReadHeaderTimeout time.Duration `name:"read-header-timeout" env:"LAPIS_READ_HEADER_TIMEOUT" default:"10s" help:"Time to read the request headers."`
	ReadTimeout       time.Duration `name:"read-timeout" env:"LAPIS_READ_TIMEOUT" default:"60s" help:"Time to read the whole request, body included."`
	WriteTimeout      time.Duration `name:"write-timeout" env:"LAPIS_WRITE_TIMEOUT" default:"120s" help:"Time to write the response, from the end of the request headers."`
	IdleTimeout       time.Duration `name:"idle-timeout" env:"LAPIS_IDLE_TIMEOUT" default:"120s" help:"How long an idle keep-alive connection stays open."`
	SearchTimeout     time.Duration `name:"search-timeout" env:"LAPIS_SEARCH_TIMEOUT" default:"10s" help:"Time budget of a FHIR search or history request (0 = none); beyond it the query is interrupted and the answer is a 503 OperationOutcome."`
	MetricsAddr       string        `name:"metrics-addr" env:"LAPIS_METRICS_ADDR" help:"Also serve /metrics, unrestricted, on this separate listener (e.g. a private interface); default off." placeholder:"HOST:PORT"`
	MetricsAllow      []string      `name:"metrics-allow" env:"LAPIS_METRICS_ALLOW" sep:"," help:"CIDRs besides loopback that may read /metrics on the main listener." placeholder:"CIDR"`
}

// tlsEnabled reports whether TLS files are configured.
func (g *gatewayFlags) tlsEnabled() bool { return g.TLSCert != "" || g.TLSKey != "" }

// applyGateway adjusts the configuration for TLS before it is checked: a
// TLS listener may bind a non-loopback address without --allow-remote
// (the rule exists to keep plaintext on loopback), and the default public
// base URL becomes https://ADDR.
func (g *gatewayFlags) applyGateway(cfg *config.Config) error {
	if !g.tlsEnabled() {
		return nil
	}
	if g.TLSCert == "" || g.TLSKey == "" {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil // Normalize reports it
	}
	if !isLoopbackHost(host) {
		cfg.AllowRemote = true
	}
	if cfg.BaseURL == "" {
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		cfg.BaseURL = "https://" + net.JoinHostPort(host, port)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// gateway is the network policy of one serve process.
type gateway struct {
	flags        *gatewayFlags
	policy       *netpolicy.Policy
	clients      *netpolicy.ClientRules // per-client allow-lists and CORS origins
	metricsAllow []netip.Prefix
	mets         *metrics.Metrics
	log          *slog.Logger
}

// netRules is the authorization database as the gateway's per-client
// rules read it (netpolicy.RulesSource over *authdb.DB).
type netRules struct{ db *authdb.DB }

func (n netRules) ClientNetRules(ctx context.Context) ([]netpolicy.Rules, error) {
	rows, err := n.db.ClientNetRules(ctx)
	out := make([]netpolicy.Rules, len(rows))
	for i, r := range rows {
		out[i] = netpolicy.Rules(r)
	}
	return out, err
}

func (n netRules) ClientNetRulesFor(ctx context.Context, clientID string) (netpolicy.Rules, error) {
	r, err := n.db.ClientNetRulesFor(ctx, clientID)
	if errors.Is(err, authdb.ErrNotFound) {
		return netpolicy.Rules{ClientID: clientID}, nil
	}
	return netpolicy.Rules(r), err
}

// buildGateway parses the flags, loads the per-client rules from rules
// (the authorization database) and starts their background reload; it
// stops with ctx.
func (g *gatewayFlags) buildGateway(ctx context.Context, cfg config.Config, rules *authdb.DB, mets *metrics.Metrics, sink audit.Sink, log *slog.Logger) (*gateway, error) {
	trusted, err := netpolicy.ParsePrefixes(g.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	allow, err := netpolicy.ParsePrefixes(g.AllowIP)
	if err != nil {
		return nil, fmt.Errorf("--allow-ip: %w", err)
	}
	metricsAllow, err := netpolicy.ParsePrefixes(g.MetricsAllow)
	if err != nil {
		return nil, fmt.Errorf("--metrics-allow: %w", err)
	}
	ua := append([]string(nil), g.DenyUserAgent...)
	if g.UserAgentDefaults {
		ua = append(ua, netpolicy.DefaultDenyUserAgents...)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-header-timeout", g.ReadHeaderTimeout}, {"--read-timeout", g.ReadTimeout}, {"--write-timeout", g.WriteTimeout}, {"--idle-timeout", g.IdleTimeout}} {
		if d.v <= 0 {
			return nil, fmt.Errorf("%s must be positive", d.name)
		}
	}
	if g.SearchTimeout < 0 {
		return nil, errors.New("--search-timeout must not be negative")
	}
	cr := netpolicy.NewClientRules(netRules{rules}, 0, log)
	if err := cr.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading client network rules: %w", err)
	}
	go cr.Run(ctx)
	p, err := netpolicy.New(netpolicy.Options{
		TrustedProxies:  trusted,
		ForwardedHeader: g.ForwardedHeader,
		AllowIPs:        allow,
		DenyUserAgents:  ua,
		Clients:         cr,
		SelfOrigin:      cfg.BaseURL,
		AuthPrefix:      "/fhir/auth/",
		Metrics:         mets,
		Audit:           sink,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	if len(allow) > 0 && len(trusted) == 0 && !isLoopbackAddr(cfg.Addr) {
		log.Info("gateway: --allow-ip applies to the direct peer (no --trusted-proxies)")
	}
	return &gateway{flags: g, policy: p, clients: cr, metricsAllow: metricsAllow, mets: mets, log: log}, nil
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

// outer returns the server-level stages, in serve order: client address
// resolution, then the global allow-list and user-agent rules, then the
// search time budget.
func (gw *gateway) outer() []func(http.Handler) http.Handler {
	return []func(http.Handler) http.Handler{gw.policy.Resolve, gw.policy.Global, server.SearchTimeout(gw.flags.SearchTimeout)}
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
			server.SetClientID(r.Context(), p.ClientID)
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
	peer := netpolicy.PeerIP(r)
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
	f := gw.flags
	o.TLSCertFile, o.TLSKeyFile = f.TLSCert, f.TLSKey
	o.ReadHeaderTimeout, o.ReadTimeout, o.WriteTimeout, o.IdleTimeout = f.ReadHeaderTimeout, f.ReadTimeout, f.WriteTimeout, f.IdleTimeout
	o.Metrics = gw.mets
	o.MetricsAllowed = gw.metricsAllowed
	return o
}

// startMetrics opens the separate /metrics listener when --metrics-addr
// is set; it serves until ctx ends.
func (gw *gateway) startMetrics(ctx context.Context) error {
	if gw.flags.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", gw.flags.MetricsAddr)
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
