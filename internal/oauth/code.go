package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth/tokenreq"
)

// CodeLifetime is how long an authorization code can be exchanged.
const CodeLifetime = 60 * time.Second

// ErrCodeReused is returned by a CodeStore (wrapping ErrCodeInvalid) when
// the code exists but was already consumed, so the token endpoint can
// revoke what the first exchange issued (RFC 6749 §4.1.2).
var ErrCodeReused = tokenreq.ErrCodeReused

// IssueCode stores g behind a new authorization code and returns the code:
// 256 random bits, base64url, stored only as its SHA-256 and valid for
// CodeLifetime. The authorize endpoint calls it once the user has
// consented.
func (s *Server) IssueCode(ctx context.Context, g *Grant) (string, error) {
	if s.cfg.Codes == nil {
		return "", errors.New("oauth: no code store configured")
	}
	if g == nil || g.ClientID == "" || g.Subject == "" || g.RedirectURI == "" || g.CodeChallenge == "" {
		return "", errors.New("oauth: grant needs a client, a subject, a redirect URI and a PKCE challenge")
	}
	if len(g.Subject) > maxSubjectLen {
		return "", errors.New("oauth: subject longer than 255 characters")
	}
	code := tokenreq.NewSecret()
	if err := s.cfg.Codes.SaveCode(ctx, tokenreq.TokenHash(code), g, s.now().Add(CodeLifetime)); err != nil {
		return "", err
	}
	return code, nil
}

// maxSubjectLen bounds the id_token sub (OpenID Connect Core §2).
const maxSubjectLen = 255

// CodeDB is the storage NewCodeStore adapts (implemented by *authdb.DB):
// codes by hash with an opaque serialized grant.
type CodeDB interface {
	SaveAuthCode(ctx context.Context, codeHash []byte, clientID string, grant []byte, expires time.Time) error
	ConsumeAuthCode(ctx context.Context, codeHash []byte, now time.Time) ([]byte, error)
}

// NewCodeStore returns a CodeStore over db, serializing grants as JSON.
// ConsumeCode returns ErrCodeReused for a code already consumed and
// ErrCodeInvalid for an unknown or expired one.
func NewCodeStore(db CodeDB) CodeStore { return codeStore{db} }

type codeStore struct{ db CodeDB }

func (c codeStore) SaveCode(ctx context.Context, codeHash []byte, g *Grant, expires time.Time) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return c.db.SaveAuthCode(ctx, codeHash, g.ClientID, b, expires)
}

func (c codeStore) ConsumeCode(ctx context.Context, codeHash []byte, now time.Time) (*Grant, error) {
	b, err := c.db.ConsumeAuthCode(ctx, codeHash, now)
	switch {
	case errors.Is(err, authdb.ErrCodeUsed):
		return nil, ErrCodeReused
	case errors.Is(err, authdb.ErrNotFound):
		return nil, ErrCodeInvalid
	case err != nil:
		return nil, err
	}
	var g Grant
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("oauth: corrupt grant: %w", err)
	}
	return &g, nil
}
