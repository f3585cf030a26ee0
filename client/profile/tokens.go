package profile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StoredToken is a token set saved by "lapis login" and refreshed later.
// Its String form never shows the tokens.
type StoredToken struct {
	// AccessToken, RefreshToken and IDToken are the issued tokens.
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	// TokenType is the token type (Bearer).
	TokenType string `json:"token_type,omitempty"`
	// Scope is the granted scope; Patient the launch patient, if any.
	Scope   string `json:"scope,omitempty"`
	Patient string `json:"patient,omitempty"`
	// ExpiresAt is the access token's expiry.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// FHIRBase, TokenURL and ClientID say where the tokens came from, so a
	// refresh goes to the same server with the same client.
	FHIRBase string `json:"fhir_base"`
	TokenURL string `json:"token_url,omitempty"`
	ClientID string `json:"client_id"`
}

// String describes the token set without any token.
func (t *StoredToken) String() string {
	return fmt.Sprintf("token set for client %s at %s (expires %s)", t.ClientID, t.FHIRBase, t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, so %#v never prints a token either.
func (t *StoredToken) GoString() string { return t.String() }

// Valid reports whether the access token is still usable margin before
// its expiry (a token without expiry is valid).
func (t *StoredToken) Valid(now time.Time, margin time.Duration) bool {
	return t != nil && t.AccessToken != "" && (t.ExpiresAt.IsZero() || now.Add(margin).Before(t.ExpiresAt))
}

// TokenCache stores token sets as 0600 JSON files in a 0700 directory, one
// per key (a profile name).
type TokenCache struct {
	// Dir is the directory (default $XDG_CONFIG_HOME/lapis/tokens).
	Dir string
}

// DefaultTokenCache returns the cache in $XDG_CONFIG_HOME/lapis/tokens.
func DefaultTokenCache() (*TokenCache, error) {
	dir, err := ConfigDir()
	if err != nil {
		return nil, err
	}
	return &TokenCache{Dir: filepath.Join(dir, "tokens")}, nil
}

// ServerKey is the cache key of a connection given by URL and client id
// rather than by a profile.
func ServerKey(fhirBase, clientID string) string {
	return hashKey("server-", fhirBase, clientID)
}

// hashKey is prefix and a short hash of parts: a file name that reveals
// nothing of them.
func hashKey(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:8])
}

func (c *TokenCache) path(key string) (string, error) {
	if !profileName.MatchString(key) {
		return "", fmt.Errorf("bad token cache key %q", key)
	}
	return filepath.Join(c.Dir, key+".json"), nil
}

// ErrNoToken is returned by Load when no token set is stored for the key.
var ErrNoToken = errors.New("no stored token: run \"lapis login\" first")

// Load returns the stored token set of key. It refuses a file that others
// can read.
func (c *TokenCache) Load(key string) (*StoredToken, error) {
	p, err := c.path(key)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoToken
	}
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", p, errors.Unwrap(err))
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token file %s is accessible by other users: chmod 600 it or log in again", p)
	}
	b, err := readFile(p)
	if err != nil {
		return nil, err
	}
	var t StoredToken
	if err := json.Unmarshal(b, &t); err != nil || t.AccessToken == "" {
		return nil, fmt.Errorf("token file %s is damaged: log in again", p)
	}
	return &t, nil
}

// Save stores t under key atomically (a 0600 temporary file renamed over
// the old one).
func (c *TokenCache) Save(key string, t *StoredToken) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("token directory %s: %w", c.Dir, errors.Unwrap(err))
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.Dir, "."+key+".*.tmp")
	if err != nil {
		return fmt.Errorf("token directory %s: %w", c.Dir, errors.Unwrap(err))
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Delete removes the stored token set of key (no error when absent).
func (c *TokenCache) Delete(key string) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
