package developer

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// MaxTermsLen bounds the text of the terms of use.
const MaxTermsLen = 64 << 10

// SetTerms lets an operator publish a new version of the terms of use;
// everyone must accept it before new credentials are issued to them.
func (s *Service) SetTerms(ctx context.Context, byID, text string) (*Terms, error) {
	op, err := s.IsOperator(ctx, byID)
	if err != nil {
		return nil, err
	}
	if !op {
		return nil, ErrForbidden
	}
	return s.publishTerms(ctx, byID, text)
}

// EnsureTerms publishes text as version 1 when no terms exist yet (the
// server's default terms).
func (s *Service) EnsureTerms(ctx context.Context, text string) error {
	_, err := s.CurrentTerms(ctx)
	if errors.Is(err, ErrNotFound) {
		_, err = s.publishTerms(ctx, "", text)
		if err != nil && errors.Is(err, ErrExists) {
			return nil
		}
	}
	return err
}

func (s *Service) publishTerms(ctx context.Context, byID, text string) (*Terms, error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > MaxTermsLen || containsControl(text) {
		return nil, invalid("the terms must be 1 to %d bytes of text", MaxTermsLen)
	}
	now := s.now()
	t := &Terms{Text: text, CreatedAt: now.UTC().Truncate(time.Second)}
	err := s.tx(ctx, func(tx txish) error {
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) + 1 FROM dev_terms").Scan(&t.Version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.rebind("INSERT INTO dev_terms (version, body, created_by, created_at) VALUES (?, ?, ?, ?)"), t.Version, text, byID, now.Unix())
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// CurrentTerms returns the latest version of the terms (ErrNotFound when
// none is set).
func (s *Service) CurrentTerms(ctx context.Context) (*Terms, error) {
	var t Terms
	var created int64
	err := s.r.QueryRowContext(ctx, "SELECT version, body, created_at FROM dev_terms ORDER BY version DESC LIMIT 1").Scan(&t.Version, &t.Text, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	t.CreatedAt = time.Unix(created, 0).UTC()
	return &t, nil
}

// AcceptTerms records that the developer accepted version, which must be
// the current one.
func (s *Service) AcceptTerms(ctx context.Context, devID string, version int) error {
	cur, err := s.CurrentTerms(ctx)
	if err != nil {
		return err
	}
	if version != cur.Version {
		return ErrTermsOutdated
	}
	if _, err := s.Developer(ctx, devID); err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, s.rebind("INSERT INTO dev_terms_acceptance (developer_id, version, accepted_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"), devID, version, s.now().Unix())
	return err
}

// AcceptedTerms returns when the developer accepted version (zero: not).
func (s *Service) AcceptedTerms(ctx context.Context, devID string, version int) (time.Time, error) {
	var at int64
	err := s.r.QueryRowContext(ctx, s.rebind("SELECT accepted_at FROM dev_terms_acceptance WHERE developer_id = ? AND version = ?"), devID, version).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(at, 0).UTC(), nil
}

// NeedsTerms reports whether the developer has yet to accept the current
// terms; while true, no credential may be issued to them (callers of the
// apps and keys pages check it). With no terms set it is false.
func (s *Service) NeedsTerms(ctx context.Context, devID string) (bool, error) {
	cur, err := s.CurrentTerms(ctx)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	at, err := s.AcceptedTerms(ctx, devID, cur.Version)
	return at.IsZero(), err
}
