package developer

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/randtoken"
)

// TokenPrefix starts every developer API token.
const TokenPrefix = "lpd_"

// MaxAPITokens bounds the API tokens of one developer.
const MaxAPITokens = 20

// CreateAPIToken creates a developer API token; its value is returned
// once and stored only as its SHA-256.
func (s *Service) CreateAPIToken(ctx context.Context, devID, name string) (string, *APIToken, error) {
	name, err := validateName(name, "token name")
	if err != nil {
		return "", nil, err
	}
	if name == "" {
		return "", nil, invalid("the token needs a name")
	}
	var n int
	if err := s.r.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM dev_api_token WHERE developer_id = ?"), devID).Scan(&n); err != nil {
		return "", nil, err
	}
	if n >= MaxAPITokens {
		return "", nil, invalid("at most %d API tokens; revoke one first", MaxAPITokens)
	}
	now := s.now()
	t := &APIToken{ID: uuid.NewString(), Name: name, CreatedAt: now.UTC().Truncate(time.Second)}
	value := TokenPrefix + randtoken.New()
	if _, err := s.w.ExecContext(ctx, s.rebind("INSERT INTO dev_api_token (id, token_hash, developer_id, name, created_at) VALUES (?, ?, ?, ?, ?)"),
		t.ID, hashToken(value), devID, name, now.Unix()); err != nil {
		return "", nil, err
	}
	return value, t, nil
}

// APITokens lists the developer's API tokens.
func (s *Service) APITokens(ctx context.Context, devID string) ([]APIToken, error) {
	return database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (t APIToken, err error) {
		var c, u int64
		err = rows.Scan(&t.ID, &t.Name, &c, &u)
		t.CreatedAt = time.Unix(c, 0).UTC()
		if u > 0 {
			t.LastUsedAt = time.Unix(u, 0).UTC()
		}
		return t, err
	}, s.rebind("SELECT id, name, created_at, last_used_at FROM dev_api_token WHERE developer_id = ? ORDER BY created_at, id"), devID)
}

// RevokeAPIToken deletes one of the developer's API tokens.
func (s *Service) RevokeAPIToken(ctx context.Context, devID, id string) error {
	res, err := s.w.ExecContext(ctx, s.rebind("DELETE FROM dev_api_token WHERE id = ? AND developer_id = ?"), id, devID)
	return changed(res, err, ErrNotFound)
}

// DeveloperByAPIToken authenticates an API token value (ErrNotFound when
// it is unknown) and records its use.
func (s *Service) DeveloperByAPIToken(ctx context.Context, value string) (*Developer, error) {
	if !strings.HasPrefix(value, TokenPrefix) || len(value) > 128 {
		return nil, ErrNotFound
	}
	var id, devID string
	var last int64
	err := s.r.QueryRowContext(ctx, s.rebind("SELECT id, developer_id, last_used_at FROM dev_api_token WHERE token_hash = ?"), hashToken(value)).Scan(&id, &devID, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if now := s.now().Unix(); now-last >= 60 {
		_, _ = s.w.ExecContext(ctx, s.rebind("UPDATE dev_api_token SET last_used_at = ? WHERE id = ?"), now, id)
	}
	return s.Developer(ctx, devID)
}
