package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lapis-health/lapis/internal/metrics"
)

// Alert rule names.
const (
	RuleVolume       = "volume"        // resources returned to one client in a window
	RuleAuthFailures = "auth_failures" // authentication failures per client and address in a window
	RuleRefused      = "refused"       // a request refused by an allow-list
)

// AlertConfig configures the alert rules.
type AlertConfig struct {
	// Webhook receives each alert as a JSON POST ("" = log only). It must
	// be https, or http on a loopback address.
	Webhook string
	// VolumeLimit and VolumeWindow: alert when one client is returned
	// more than VolumeLimit resources within VolumeWindow (0 disables;
	// seed 001: 10,000 per hour).
	VolumeLimit  int
	VolumeWindow time.Duration
	// AuthFailureLimit and AuthFailureWindow: alert when one client or
	// address fails authentication more than AuthFailureLimit times
	// within AuthFailureWindow (0 disables).
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// Refusals: alert on every allow-list refusal (at most once per
	// client/address a minute).
	Refusals bool
	// Instance names this server in the alerts (SetInstance may name it
	// later, once the audit chain is known).
	Instance string
	// Environment names the environment whose trail raises the alerts
	// ("production", "sandbox"; "" leaves it out).
	Environment string
	// Metrics counts alerts (may be nil); Logger logs them.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Client posts the webhook (default: 5 s timeout, no redirects).
	Client *http.Client
	// QueueSize bounds alerts waiting for delivery (default 256).
	QueueSize int
	// Retries is the number of delivery attempts (default 3).
	Retries int
	// Backoff is the wait before the first retry, doubled after each
	// (default 1 s).
	Backoff time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Windows, when set, holds the rule windows every instance shares
	// (Redis or the database): counts are added every FlushEvery and the
	// instance whose addition crosses a threshold raises the alert. Nil:
	// each instance counts on its own.
	Windows WindowStore
	// FlushEvery is how often counts go to Windows (default
	// DefaultFlushEvery): the bound on an alert's delay.
	FlushEvery time.Duration
}

// CheckWebhook refuses webhook URLs that could be used to reach internal
// services in clear text: only https, or http on a loopback address.
func CheckWebhook(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return errors.New("alert webhook: want an absolute https URL without credentials")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("alert webhook: http is allowed only on loopback; use https")
	}
	return errors.New("alert webhook: want an https URL")
}

// Alert is one alert as sent to the webhook.
type Alert struct {
	Rule     string    `json:"rule"`
	Time     time.Time `json:"time"`
	Instance string    `json:"instance,omitempty"`
	// Environment is the environment of the trail ("production",
	// "sandbox").
	Environment string `json:"environment,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	Address     string `json:"address,omitempty"`
	Count       int    `json:"count"`
	Threshold   int    `json:"threshold"`
	Window      string `json:"window,omitempty"`
	Detail      string `json:"detail"`
}

// Alerter evaluates the rules on committed audit events (an Observer) and
// delivers alerts asynchronously; it never blocks the caller.
type Alerter struct {
	cfg AlertConfig
	q   chan Alert
	// instance names this server in the alerts (SetInstance).
	instance atomic.Pointer[string]

	mu      sync.Mutex
	windows map[string]*window
	shared  *sharedWindows // nil: windows per instance

	closeOnce sync.Once

	stop chan struct{}
	done chan struct{}
}

type window struct {
	start   time.Time
	count   int
	alerted bool
}

// maxWindows bounds the rule state; beyond it the oldest state is reset.
const maxWindows = 100000

// NewAlerter starts the alert delivery goroutine. Close stops it.
func NewAlerter(cfg AlertConfig) (*Alerter, error) {
	if cfg.Webhook != "" {
		if err := CheckWebhook(cfg.Webhook); err != nil {
			return nil, err
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.VolumeWindow <= 0 {
		cfg.VolumeWindow = time.Hour
	}
	if cfg.AuthFailureWindow <= 0 {
		cfg.AuthFailureWindow = 5 * time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	a := &Alerter{cfg: cfg, q: make(chan Alert, cfg.QueueSize), windows: map[string]*window{}, stop: make(chan struct{}), done: make(chan struct{})}
	a.instance.Store(&cfg.Instance)
	if cfg.Windows != nil {
		a.shared = newSharedWindows(a, cfg.Windows, cfg.FlushEvery)
	}
	go a.deliver()
	return a, nil
}

// SetInstance names this server in the alerts raised from now on: the
// audit chain id, which its AuditEvents name in source.observer (the
// chain exists only once the recorder that this Alerter observes for has
// started).
func (a *Alerter) SetInstance(name string) { a.instance.Store(&name) }

// Observe evaluates the rules on e.
func (a *Alerter) Observe(e *Event) {
	now := a.cfg.Now()
	switch e.Kind {
	case KindREST:
		if a.cfg.VolumeLimit > 0 && e.Returned > 0 {
			key := e.ClientID
			if key == "" {
				key = "address:" + e.Address
			}
			a.count(RuleVolume+"\x00"+key, e.Returned, now, Alert{Rule: RuleVolume, Time: now, ClientID: e.ClientID, Address: e.Address, Threshold: a.cfg.VolumeLimit,
				Window: a.cfg.VolumeWindow.String(), Detail: "more resources returned to one client than the rule allows"}, a.cfg.VolumeWindow)
		}
	case KindAuthnFailure, KindLoginFailure, KindTokenFailure:
		if a.cfg.AuthFailureLimit > 0 {
			for _, key := range []string{"client:" + e.ClientID, "address:" + e.Address} {
				if key == "client:" || key == "address:" {
					continue
				}
				a.count(RuleAuthFailures+"\x00"+key, e.occurrences(), now, Alert{Rule: RuleAuthFailures, Time: now, ClientID: e.ClientID, Address: e.Address, Threshold: a.cfg.AuthFailureLimit,
					Window: a.cfg.AuthFailureWindow.String(), Detail: "repeated authentication failures"}, a.cfg.AuthFailureWindow)
			}
		}
	case KindNetworkRefused:
		if a.cfg.Refusals {
			a.count(RuleRefused+"\x00"+e.ClientID+"\x00"+e.Address, e.occurrences(), now, Alert{Rule: RuleRefused, Time: now, ClientID: e.ClientID, Address: e.Address, Threshold: 0,
				Window: time.Minute.String(), Detail: "request refused by an allow-list"}, time.Minute)
		}
	}
}

// count adds n to the window of key and raises al (its Count set) when
// the window just went over al.Threshold (once per window): at once in
// this instance's windows, or at the next flush with shared Windows.
func (a *Alerter) count(key string, n int, now time.Time, al Alert, span time.Duration) {
	if a.shared != nil {
		a.shared.add(key, n, now, al, span)
		return
	}
	if total, fire := a.countLocal(key, n, al.Threshold, span, now); fire {
		al.Count = total
		a.raise(al)
	}
}

// countLocal adds n to this instance's window of key and reports whether
// it just went over limit (once per window).
func (a *Alerter) countLocal(key string, n, limit int, span time.Duration, now time.Time) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.windows[key]
	if w == nil || now.Sub(w.start) >= span {
		if w == nil && len(a.windows) >= maxWindows {
			for k, old := range a.windows {
				if now.Sub(old.start) >= span {
					delete(a.windows, k)
				}
			}
			if len(a.windows) >= maxWindows {
				clear(a.windows)
			}
		}
		w = &window{start: now}
		a.windows[key] = w
	}
	w.count += n
	if w.count > limit && !w.alerted {
		w.alerted = true
		return w.count, true
	}
	return w.count, false
}

func (a *Alerter) raise(al Alert) {
	al.Instance = *a.instance.Load()
	al.Environment = a.cfg.Environment
	a.cfg.Logger.Warn("audit alert", "rule", al.Rule, "client_id", al.ClientID, "address", al.Address, "count", al.Count, "threshold", al.Threshold, "window", al.Window)
	if a.cfg.Webhook == "" {
		a.cfg.Metrics.AlertSent(al.Rule, true)
		return
	}
	select {
	case a.q <- al:
	default:
		a.cfg.Metrics.AlertSent(al.Rule, false)
		a.cfg.Logger.Error("audit alert not delivered: webhook queue full", "rule", al.Rule)
	}
}

func (a *Alerter) deliver() {
	defer close(a.done)
	for {
		select {
		case <-a.stop:
			return
		case al := <-a.q:
			ok := a.post(al)
			a.cfg.Metrics.AlertSent(al.Rule, ok)
			if !ok {
				a.cfg.Logger.Error("audit alert not delivered to the webhook", "rule", al.Rule)
			}
		}
	}
}

func (a *Alerter) post(al Alert) bool {
	body, _ := json.Marshal(al)
	wait := a.cfg.Backoff
	for attempt := 0; attempt < a.cfg.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-a.stop:
				return false
			case <-time.After(wait):
			}
			wait *= 2
		}
		if err := a.send(body); err == nil {
			return true
		}
	}
	return false
}

func (a *Alerter) send(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// Close stops delivery (alerts still queued are dropped with a log line).
func (a *Alerter) Close() { a.closeOnce.Do(a.close) }

func (a *Alerter) close() {
	if a.shared != nil {
		a.shared.close() // the last counts may raise alerts
	}
	close(a.stop)
	<-a.done
	for {
		select {
		case al := <-a.q:
			a.cfg.Metrics.AlertSent(al.Rule, false)
			a.cfg.Logger.Warn("audit alert not delivered: shutting down", "rule", al.Rule)
		default:
			return
		}
	}
}
