// Package webhook sends the developer portal's signed notifications of
// app status changes (app.approved, app.declined, app.suspended,
// app.resumed) to per-organisation endpoints.
//
// An endpoint is a URL and a signing secret, shown once when the endpoint
// is created. HMAC signing needs the secret itself, so it cannot be
// hashed: it is stored sealed with the server's key-encryption key
// (AES-256-GCM, Config.KEK — the same KEK that protects the signing keys);
// without a KEK it is stored as is ("plain:"), which Config says.
//
// Deliveries follow Standard Webhooks: headers webhook-id,
// webhook-timestamp and webhook-signature ("v1,<base64 HMAC-SHA256 of
// id.timestamp.body>"); Verify is the receiver's check. Every event is
// first written to a durable outbox (one row per endpoint), then a worker
// (Start/Close) posts it, retrying failures with exponential backoff
// until MaxAttempts. Several instances may run workers on one database:
// a row is claimed with a conditional UPDATE before it is sent.
//
// Delivery is SSRF-guarded: https only, and connections to loopback,
// private, link-local and other non-public addresses are refused at dial
// time (after DNS resolution, so a name cannot be re-pointed), unless
// AllowPrivate is set (tests, development). Redirects are not followed,
// responses are read to at most 64 KiB and every attempt has a timeout.
package webhook

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
	"github.com/lapis-health/lapis/internal/oauth/jwksfetch"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the webhook schema.
const VersionTable = "lapis_webhook_goose_version"

const migrationLockID = 0x6c617069735f7768 // "lapis_wh"

// Events.
const (
	AppApproved  = "app.approved"
	AppDeclined  = "app.declined"
	AppSuspended = "app.suspended"
	AppResumed   = "app.resumed"
)

// Events are every event an endpoint may subscribe to.
var Events = []string{AppApproved, AppDeclined, AppSuspended, AppResumed}

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// maxResponse bounds how much of a receiver's answer is read.
const maxResponse = 64 << 10

var (
	// ErrNotFound: no such endpoint (in that organisation).
	ErrNotFound = errors.New("webhook: endpoint not found")
	// ErrForbiddenAddress: the endpoint's address is not public.
	ErrForbiddenAddress = errors.New("webhook: destination address not allowed")
)

// InvalidError is input the service refuses.
type InvalidError struct{ Field, Reason string }

// Error implements error.
func (e *InvalidError) Error() string { return e.Field + " " + e.Reason }

// Endpoint is an organisation's webhook endpoint (never its secret).
type Endpoint struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
}

// Delivery is one outbox row: an event for one endpoint.
type Delivery struct {
	ID          string    `json:"id"`
	EndpointID  string    `json:"endpoint_id"`
	Event       string    `json:"event"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt_at,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// Config configures a Service.
type Config struct {
	// KEK seals the signing secrets at rest (keys.LoadKEK of the
	// server's KEK file). Nil stores them unsealed: say so in operations
	// docs; the server should always pass its KEK.
	KEK cipher.AEAD
	// AllowPrivate permits http:// URLs and non-public addresses (tests,
	// development only).
	AllowPrivate bool
	// Timeout bounds one delivery attempt (default 10 s).
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets before it is
	// marked failed (default 8).
	MaxAttempts int
	// Backoff is the wait after the first failure; it doubles per
	// attempt up to MaxBackoff (defaults 30 s and 1 h).
	Backoff, MaxBackoff time.Duration
	// PollInterval is how often the worker looks for due deliveries
	// (default 2 s); Enqueue also wakes it.
	PollInterval time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Service keeps endpoints and delivers events.
type Service struct {
	w, r     *sql.DB
	postgres bool
	cfg      Config
	client   *http.Client

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
	started   bool
}

// New builds the service on the process's database handle h and applies
// its migrations.
func New(ctx context.Context, h *database.DB, cfg Config) (*Service, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{w: h.Writer, r: h.Reader, postgres: h.Postgres(), cfg: cfg,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := migrate.Up(ctx, s.w, migrations, s.postgres, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("webhook: migrate: %w", err)
	}
	s.client = newClient(cfg)
	return s, nil
}

// newClient is the guarded HTTP client of deliveries.
func newClient(cfg Config) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.Timeout}
	if !cfg.AllowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !jwksfetch.Public(ap.Addr()) {
				return ErrForbiddenAddress
			}
			return nil
		}
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, Proxy: nil},
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (s *Service) rebind(q string) string { return database.Rebind(s.postgres, q) }

func randomID(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// checkURL accepts an absolute https URL (http too with AllowPrivate)
// whose host, when it is a literal address, is public.
func (s *Service) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > 2048 {
		return &InvalidError{"url", "must be an absolute https URL without credentials or fragment"}
	}
	if u.Scheme != "https" && !(s.cfg.AllowPrivate && u.Scheme == "http") {
		return &InvalidError{"url", "must use https"}
	}
	if s.cfg.AllowPrivate {
		return nil
	}
	h := u.Hostname()
	if a, err := netip.ParseAddr(h); err == nil && !jwksfetch.Public(a) {
		return &InvalidError{"url", "must not point at a loopback, private or link-local address"}
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return &InvalidError{"url", "must not point at localhost"}
	}
	return nil
}

func (s *Service) seal(secret string) (string, error) {
	if s.cfg.KEK == nil {
		return "plain:" + secret, nil
	}
	nonce := make([]byte, s.cfg.KEK.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.cfg.KEK.Seal(nonce, nonce, []byte(secret), []byte("lapis-webhook"))
	return "gcm:" + base64.StdEncoding.EncodeToString(out), nil
}

func (s *Service) unseal(enc string) (string, error) {
	if rest, ok := strings.CutPrefix(enc, "plain:"); ok {
		return rest, nil
	}
	rest, ok := strings.CutPrefix(enc, "gcm:")
	if !ok || s.cfg.KEK == nil {
		return "", errors.New("webhook: sealed secret without a KEK")
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	n := s.cfg.KEK.NonceSize()
	if err != nil || len(b) < n {
		return "", errors.New("webhook: corrupt sealed secret")
	}
	p, err := s.cfg.KEK.Open(nil, b[:n], b[n:], []byte("lapis-webhook"))
	if err != nil {
		return "", errors.New("webhook: sealed secret does not open with this KEK")
	}
	return string(p), nil
}

// MaxEndpoints bounds an organisation's endpoints (every event is sent
// to each of them).
const MaxEndpoints = 10

// CreateEndpoint registers an endpoint of orgID for events (empty: all)
// and returns it with its signing secret, shown only here.
func (s *Service) CreateEndpoint(ctx context.Context, orgID, rawURL string, events []string) (*Endpoint, string, error) {
	if strings.TrimSpace(orgID) == "" {
		return nil, "", &InvalidError{"org_id", "is required"}
	}
	if err := s.checkURL(rawURL); err != nil {
		return nil, "", err
	}
	if len(events) == 0 {
		events = Events
	}
	for _, e := range events {
		if !slices.Contains(Events, e) {
			return nil, "", &InvalidError{"events", fmt.Sprintf("%q is not one of %s", e, strings.Join(Events, ", "))}
		}
	}
	var n int
	if err := s.r.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM webhook_endpoint WHERE org_id = ?"), orgID).Scan(&n); err != nil {
		return nil, "", fmt.Errorf("webhook: count endpoints: %w", err)
	}
	if n >= MaxEndpoints {
		return nil, "", &InvalidError{"url", fmt.Sprintf("an organisation has at most %d endpoints; delete one first", MaxEndpoints)}
	}
	id, err := randomID("we_", 12)
	if err != nil {
		return nil, "", err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, "", err
	}
	secret := secretPrefix + base64.StdEncoding.EncodeToString(key)
	enc, err := s.seal(secret)
	if err != nil {
		return nil, "", err
	}
	ep := &Endpoint{ID: id, OrgID: orgID, URL: rawURL, Events: slices.Clone(events), CreatedAt: s.cfg.Now().UTC().Truncate(time.Second)}
	if _, err := s.w.ExecContext(ctx, s.rebind("INSERT INTO webhook_endpoint (id, org_id, url, secret_enc, events, created_at) VALUES (?, ?, ?, ?, ?, ?)"),
		ep.ID, ep.OrgID, ep.URL, enc, strings.Join(ep.Events, " "), ep.CreatedAt.Unix()); err != nil {
		return nil, "", fmt.Errorf("webhook: create endpoint: %w", err)
	}
	return ep, secret, nil
}

// Endpoints lists orgID's endpoints, oldest first.
func (s *Service) Endpoints(ctx context.Context, orgID string) ([]Endpoint, error) {
	out, err := database.AppendRows(ctx, []Endpoint{}, s.r, func(rows *sql.Rows) (e Endpoint, err error) {
		var events string
		var created int64
		err = rows.Scan(&e.ID, &e.OrgID, &e.URL, &events, &created)
		e.Events, e.CreatedAt = strings.Fields(events), time.Unix(created, 0).UTC()
		return e, err
	}, s.rebind("SELECT id, org_id, url, events, created_at FROM webhook_endpoint WHERE org_id = ? ORDER BY created_at, id"), orgID)
	if err != nil {
		return nil, fmt.Errorf("webhook: list endpoints: %w", err)
	}
	return out, nil
}

// DeleteEndpoint deletes orgID's endpoint id and its pending deliveries.
func (s *Service) DeleteEndpoint(ctx context.Context, orgID, id string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhook: delete endpoint: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rebind("DELETE FROM webhook_outbox WHERE endpoint_id IN (SELECT id FROM webhook_endpoint WHERE id = ? AND org_id = ?)"), id, orgID); err != nil {
		return fmt.Errorf("webhook: delete endpoint: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.rebind("DELETE FROM webhook_endpoint WHERE id = ? AND org_id = ?"), id, orgID)
	if err != nil {
		return fmt.Errorf("webhook: delete endpoint: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return tx.Commit()
}

// payload is the body of a delivery.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

// Enqueue writes event with data (a JSON object: ids and statuses, never
// secrets) to the outbox of each of orgID's endpoints subscribed to it,
// and wakes the worker. It returns how many deliveries it queued.
func (s *Service) Enqueue(ctx context.Context, orgID, event string, data any) (int, error) {
	if !slices.Contains(Events, event) {
		return 0, &InvalidError{"event", "is not a webhook event"}
	}
	eps, err := s.Endpoints(ctx, orgID)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now().UTC()
	body, err := json.Marshal(payload{Type: event, Timestamp: now.Truncate(time.Second), Data: data})
	if err != nil {
		return 0, fmt.Errorf("webhook: payload: %w", err)
	}
	n := 0
	for _, ep := range eps {
		if !slices.Contains(ep.Events, event) {
			continue
		}
		id, err := randomID("msg_", 16)
		if err != nil {
			return n, err
		}
		if _, err := s.w.ExecContext(ctx, s.rebind("INSERT INTO webhook_outbox (id, endpoint_id, event, payload, created_at, status, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"),
			id, ep.ID, event, string(body), now.Unix(), StatusPending, now.Unix()); err != nil {
			return n, fmt.Errorf("webhook: enqueue: %w", err)
		}
		n++
	}
	if n > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return n, nil
}

// Deliveries lists the deliveries of orgID's endpoint id, newest first
// (at most 100).
func (s *Service) Deliveries(ctx context.Context, orgID, endpointID string) ([]Delivery, error) {
	out, err := database.AppendRows(ctx, []Delivery{}, s.r, func(rows *sql.Rows) (d Delivery, err error) {
		var next, created int64
		var delivered sql.NullInt64
		if err := rows.Scan(&d.ID, &d.EndpointID, &d.Event, &d.Status, &d.Attempts, &next, &d.LastStatus, &d.LastError, &created, &delivered); err != nil {
			return d, err
		}
		d.CreatedAt = time.Unix(created, 0).UTC()
		if d.Status == StatusPending {
			d.NextAttempt = time.Unix(next, 0).UTC()
		}
		if delivered.Valid {
			d.DeliveredAt = time.Unix(delivered.Int64, 0).UTC()
		}
		return d, nil
	}, s.rebind("SELECT o.id, o.endpoint_id, o.event, o.status, o.attempts, o.next_attempt_at, o.last_status, o.last_error, o.created_at, o.delivered_at "+
		"FROM webhook_outbox o JOIN webhook_endpoint e ON e.id = o.endpoint_id WHERE e.org_id = ? AND e.id = ? ORDER BY o.created_at DESC, o.id LIMIT 100"), orgID, endpointID)
	if err != nil {
		return nil, fmt.Errorf("webhook: deliveries: %w", err)
	}
	return out, nil
}

// Start runs the delivery worker until Close.
func (s *Service) Start() {
	s.startOnce.Do(func() {
		s.started = true
		go s.run()
	})
}

// Close stops the worker (an attempt in flight is cancelled and retried
// later).
func (s *Service) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.startOnce.Do(func() {})
	if s.started {
		<-s.done
	}
	return nil
}

func (s *Service) run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(database.Background(context.Background()))
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := s.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("webhook: delivery pass failed", "error", err.Error())
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// due is one claimed outbox row with its endpoint.
type due struct {
	id, event, payload, url, secretEnc string
	attempts                           int
}

// DeliverDue makes one pass: it claims the deliveries due now (up to
// 50), attempts each once and records the outcome. It returns how many
// were delivered. The worker calls it; tests may too.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	list, err := database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (d due, err error) {
		err = rows.Scan(&d.id, &d.event, &d.payload, &d.url, &d.secretEnc, &d.attempts)
		return d, err
	}, s.rebind("SELECT o.id, o.event, o.payload, e.url, e.secret_enc, o.attempts FROM webhook_outbox o JOIN webhook_endpoint e ON e.id = o.endpoint_id "+
		"WHERE o.status = ? AND o.next_attempt_at <= ? AND o.claimed_until < ? ORDER BY o.next_attempt_at, o.id LIMIT 50"), StatusPending, now.Unix(), now.Unix())
	if err != nil {
		return 0, fmt.Errorf("webhook: due deliveries: %w", err)
	}
	delivered := 0
	claim := now.Add(2 * s.cfg.Timeout).Unix()
	for _, d := range list {
		if ctx.Err() != nil {
			return delivered, ctx.Err()
		}
		res, err := s.w.ExecContext(ctx, s.rebind("UPDATE webhook_outbox SET claimed_until = ? WHERE id = ? AND status = ? AND claimed_until < ?"),
			claim, d.id, StatusPending, now.Unix())
		if err != nil {
			return delivered, fmt.Errorf("webhook: claim: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			continue // another worker has it
		}
		status, aerr := s.attempt(ctx, d)
		if ctx.Err() != nil {
			return delivered, ctx.Err()
		}
		if err := s.record(ctx, d, status, aerr); err != nil {
			return delivered, err
		}
		if aerr == nil {
			delivered++
		}
	}
	return delivered, nil
}

// attempt posts one delivery; a nil error means a 2xx answer.
func (s *Service) attempt(ctx context.Context, d due) (int, error) {
	secret, err := s.unseal(d.secretEnc)
	if err != nil {
		return 0, err
	}
	if err := s.checkURL(d.url); err != nil {
		return 0, err
	}
	body := []byte(d.payload)
	ts := s.cfg.Now()
	sig, err := Sign(secret, d.id, ts, body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Lapis-Webhooks/1")
	req.Header.Set(HeaderID, d.id)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(ts.Unix()))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrForbiddenAddress) {
			return 0, ErrForbiddenAddress
		}
		return 0, errors.New("request failed: " + scrub(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// scrub keeps an error's kind without the URL (which may hold a token).
func scrub(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// Backoff returns the wait before attempt n+1 after n failed attempts:
// Backoff doubled n-1 times, at most MaxBackoff.
func (s *Service) Backoff(n int) time.Duration {
	d := s.cfg.Backoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// record stores an attempt's outcome.
func (s *Service) record(ctx context.Context, d due, status int, aerr error) error {
	now := s.cfg.Now()
	attempts := d.attempts + 1
	var err error
	switch {
	case aerr == nil:
		_, err = s.w.ExecContext(ctx, s.rebind("UPDATE webhook_outbox SET status = ?, attempts = ?, last_status = ?, last_error = '', delivered_at = ?, claimed_until = 0 WHERE id = ?"),
			StatusDelivered, attempts, status, now.Unix(), d.id)
	case attempts >= s.cfg.MaxAttempts:
		_, err = s.w.ExecContext(ctx, s.rebind("UPDATE webhook_outbox SET status = ?, attempts = ?, last_status = ?, last_error = ?, claimed_until = 0 WHERE id = ?"),
			StatusFailed, attempts, status, aerr.Error(), d.id)
	default:
		next := now.Add(s.Backoff(attempts))
		_, err = s.w.ExecContext(ctx, s.rebind("UPDATE webhook_outbox SET attempts = ?, last_status = ?, last_error = ?, next_attempt_at = ?, claimed_until = 0 WHERE id = ?"),
			attempts, status, aerr.Error(), next.Unix(), d.id)
	}
	if err != nil {
		return fmt.Errorf("webhook: record attempt: %w", err)
	}
	if aerr != nil {
		s.cfg.Logger.Info("webhook: delivery failed", "delivery_id", d.id, "event", d.event, "attempt", attempts, "error", aerr.Error())
	}
	return nil
}
