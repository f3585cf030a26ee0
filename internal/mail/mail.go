// Package mail sends the developer portal's emails (address verification,
// password reset, invitations): a Sender interface, an SMTP sender
// (github.com/wneessen/go-mail) and, for development without SMTP, a Log
// sender that writes the message — with its link — to the log, marked as
// development mode. That is the only place a one-time link may be logged.
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Sender sends a plain-text email.
type Sender interface {
	Send(ctx context.Context, to, subject, textBody string) error
}

// TLS policies of the SMTP connection.
const (
	// TLSMandatory requires STARTTLS (the default).
	TLSMandatory = "mandatory"
	// TLSOpportunistic uses STARTTLS when the server offers it.
	TLSOpportunistic = "opportunistic"
	// TLSNone never encrypts (local relays only).
	TLSNone = "none"
	// TLSImplicit connects with TLS from the start (smtps, port 465).
	TLSImplicit = "implicit"
)

// SMTPConfig configures an SMTP sender.
type SMTPConfig struct {
	// Host and Port are the server (Port default 587, 465 for implicit
	// TLS).
	Host string
	Port int
	// Username and Password authenticate (PLAIN) when Username is set.
	Username, Password string
	// From is the sender address.
	From string
	// TLS is TLSMandatory (default), TLSOpportunistic, TLSNone or
	// TLSImplicit.
	TLS string
	// TLSConfig overrides the TLS settings (tests: a private root).
	TLSConfig *tls.Config
	// Timeout bounds a delivery (default 30 s).
	Timeout time.Duration
}

// ParseURL reads smtp://user:pass@host:port?tls=mandatory|opportunistic|none
// or smtps://user:pass@host:port (implicit TLS) into an SMTPConfig.
func ParseURL(raw string) (SMTPConfig, error) {
	var c SMTPConfig
	u, err := url.Parse(raw)
	if err != nil {
		return c, errors.New("mail: the SMTP URL is not a URL")
	}
	switch u.Scheme {
	case "smtp":
		c.TLS = TLSMandatory
	case "smtps":
		c.TLS = TLSImplicit
	default:
		return c, errors.New("mail: the SMTP URL must start with smtp:// or smtps://")
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return c, errors.New("mail: the SMTP URL has no host")
	}
	if p := u.Port(); p != "" {
		if c.Port, err = strconv.Atoi(p); err != nil || c.Port < 1 || c.Port > 65535 {
			return c, errors.New("mail: the SMTP URL has an invalid port")
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if t := u.Query().Get("tls"); t != "" {
		if c.TLS == TLSImplicit {
			return c, errors.New("mail: smtps:// always uses TLS; drop tls=")
		}
		switch t {
		case TLSMandatory, TLSOpportunistic, TLSNone:
			c.TLS = t
		default:
			return c, fmt.Errorf("mail: tls=%q: want mandatory, opportunistic or none", t)
		}
	}
	return c, nil
}

// Redacted is the URL's form for logs and errors: the password hidden.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// SMTP sends mail through an SMTP server.
type SMTP struct {
	cfg  SMTPConfig
	opts []gomail.Option
}

// NewSMTP returns an SMTP sender.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if cfg.Host == "" {
		return nil, errors.New("mail: no SMTP host")
	}
	if cfg.From == "" {
		return nil, errors.New("mail: no sender address (--smtp-from)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := []gomail.Option{gomail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case "", TLSMandatory:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
		if cfg.Port == 0 {
			cfg.Port = 465
		}
	default:
		return nil, fmt.Errorf("mail: unknown TLS policy %q", cfg.TLS)
	}
	if cfg.Port == 0 {
		cfg.Port = 587
	}
	opts = append(opts, gomail.WithPort(cfg.Port))
	if cfg.TLSConfig != nil {
		opts = append(opts, gomail.WithTLSConfig(cfg.TLSConfig))
	}
	if cfg.Username != "" {
		auth := gomail.SMTPAuthPlain
		if cfg.TLS == TLSNone {
			auth = gomail.SMTPAuthPlainNoEnc // explicitly configured
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	return &SMTP{cfg: cfg, opts: opts}, nil
}

// Send delivers one plain-text message.
func (s *SMTP) Send(ctx context.Context, to, subject, textBody string) error {
	m := gomail.NewMsg()
	if err := m.From(s.cfg.From); err != nil {
		return fmt.Errorf("mail: sender address: %w", err)
	}
	if err := m.To(to); err != nil {
		return fmt.Errorf("mail: recipient address: %w", err)
	}
	m.Subject(subject)
	m.SetBodyString(gomail.TypeTextPlain, textBody)
	c, err := gomail.NewClient(s.cfg.Host, s.opts...)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("mail: send via %s: %w", net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)), err)
	}
	return nil
}

// DevModeMessage is the log message of the Log sender.
const DevModeMessage = "DEVELOPMENT MODE: email not sent (no SMTP configured); its text, with any link, is logged here"

// Log is the development-mode sender: it writes each message to the log
// at Info, marked as development mode, instead of sending it.
type Log struct {
	// Logger receives the messages.
	Logger *slog.Logger
}

// Send logs the message.
func (l *Log) Send(ctx context.Context, to, subject, textBody string) error {
	l.Logger.LogAttrs(ctx, slog.LevelInfo, DevModeMessage, slog.Bool("dev_mode", true), slog.String("to", to), slog.String("subject", subject), slog.String("body", textBody))
	return nil
}

// Message is a message kept by Memory.
type Message struct{ To, Subject, Body string }

// Memory keeps the messages it is given (tests and tools).
type Memory struct {
	mu   sync.Mutex
	msgs []Message
	// Notify, when set, receives each message's address as it arrives.
	Notify chan string
}

// Send keeps the message.
func (m *Memory) Send(_ context.Context, to, subject, textBody string) error {
	m.mu.Lock()
	m.msgs = append(m.msgs, Message{To: to, Subject: subject, Body: textBody})
	m.mu.Unlock()
	if m.Notify != nil {
		m.Notify <- to
	}
	return nil
}

// Messages returns the messages so far.
func (m *Memory) Messages() []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Message(nil), m.msgs...)
}

// Last returns the last message to the address (ok false when none).
func (m *Memory) Last(to string) (Message, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.msgs) - 1; i >= 0; i-- {
		if strings.EqualFold(m.msgs[i].To, to) {
			return m.msgs[i], true
		}
	}
	return Message{}, false
}

// New returns the SMTP sender of smtpURL (ParseURL) with the sender
// address from, or, when smtpURL is empty, the development-mode Log sender
// on logger (devMode true: the caller warns at startup).
func New(smtpURL, from string, logger *slog.Logger) (s Sender, devMode bool, err error) {
	if smtpURL == "" {
		return &Log{Logger: logger}, true, nil
	}
	cfg, err := ParseURL(smtpURL)
	if err != nil {
		return nil, false, err
	}
	cfg.From = from
	sm, err := NewSMTP(cfg)
	if err != nil {
		return nil, false, err
	}
	return sm, false, nil
}
