// Package config holds the settings of a Lapis process and checks them.
// Values come from command-line flags, then LAPIS_* environment variables,
// then defaults (the precedence is flag > environment > default); the cli
// package fills a Config and every other package receives it explicitly.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Config is the configuration of one Lapis process.
type Config struct {
	// Addr is the listen address, HOST:PORT.
	Addr string
	// BaseURL is the public URL of this server without a trailing slash;
	// the FHIR base is BaseURL + "/fhir". Defaults to http://Addr.
	BaseURL string
	// DataDir holds the embedded SQLite database (and later key material).
	DataDir string
	// DatabaseURL selects PostgreSQL (postgres://...) or an explicit SQLite
	// file (sqlite:PATH); empty = SQLite in DataDir.
	DatabaseURL string
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// DefaultCount and MaxCount bound search page sizes.
	DefaultCount, MaxCount int
	// MaxBundleEntries bounds the entries of a batch or transaction Bundle
	// (0 = no limit: the admin commands, e.g. lapis import, which works
	// with Prefer: return=minimal).
	MaxBundleEntries int
	// MaxResponseBytes bounds every Bundle the FHIR API renders: a batch
	// or transaction response, a search or a history page (0 = no limit).
	MaxResponseBytes int64
	// AllowRemote permits listening on a non-loopback address. Until
	// authentication is enabled the server refuses to, by default.
	AllowRemote bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
}

// Serve defaults of the response bounds (lapis serve; the admin commands
// keep no limit).
const (
	// DefaultMaxBundleEntries is --max-bundle-entries: comfortably above
	// the largest Synthea patient Bundle (293 entries), far below what
	// makes one request a denial of service.
	DefaultMaxBundleEntries = 1000
	// DefaultMaxResponseBytes is --max-response: twice the default request
	// body limit.
	DefaultMaxResponseBytes = 32 << 20
)

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Addr:         "127.0.0.1:8080",
		DataDir:      defaultDataDir(),
		MaxBodyBytes: 16 << 20,
		DefaultCount: 20,
		MaxCount:     1000,
		LogLevel:     "info",
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lapis")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "lapis")
	}
	return "lapis-data"
}

// Normalize fills derived defaults (BaseURL from Addr) and validates the
// configuration. checkListen also enforces the loopback rule for servers.
func (c *Config) Normalize(checkListen bool) error {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("invalid --addr %q: want HOST:PORT", c.Addr)
	}
	if c.BaseURL == "" {
		h := host
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = "localhost"
		}
		c.BaseURL = "http://" + net.JoinHostPort(h, port)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid --base-url %q: want an absolute http(s) URL without query or fragment", c.BaseURL)
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("invalid max body size %d: must be positive", c.MaxBodyBytes)
	}
	if c.MaxBundleEntries < 0 {
		return fmt.Errorf("invalid max bundle entries %d: must be positive, or 0 for no limit", c.MaxBundleEntries)
	}
	if c.MaxResponseBytes < 0 {
		return fmt.Errorf("invalid max response size %d: must be positive, or 0 for no limit", c.MaxResponseBytes)
	}
	if c.DefaultCount <= 0 || c.MaxCount < c.DefaultCount {
		return fmt.Errorf("invalid page sizes: default %d, max %d", c.DefaultCount, c.MaxCount)
	}
	if c.DatabaseURL != "" && !IsPostgres(c.DatabaseURL) && !strings.HasPrefix(c.DatabaseURL, "sqlite:") && !strings.HasPrefix(c.DatabaseURL, "file:") {
		return fmt.Errorf("invalid --database: want postgres://..., sqlite:PATH or empty for the embedded database")
	}
	if checkListen && !c.AllowRemote && !isLoopback(host) {
		return fmt.Errorf("refusing to serve plain HTTP on %q: outside loopback Lapis needs --tls-cert/--tls-key, or --allow-remote behind a TLS-terminating proxy", c.Addr)
	}
	return nil
}

// FHIRBase returns the FHIR base URL, BaseURL + "/fhir".
func (c *Config) FHIRBase() string { return c.BaseURL + "/fhir" }

// IsPostgres reports whether a database URL selects PostgreSQL.
func IsPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
