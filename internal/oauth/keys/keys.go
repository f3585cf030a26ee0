// Package keys manages the authorization server's signing keys: an ES256
// key for access tokens and an RS256 key for id_tokens, generated on first
// start, stored in the database with the private half encrypted
// (AES-256-GCM) under a key-encryption key (KEK) kept in a 0600 file in the
// data directory, published as a JWKS with their kid, and rotated by
// Rotate (lapis keys rotate), which keeps the retired public keys
// published until every token they signed has expired.
//
// With PostgreSQL and several server instances, every instance needs the
// same KEK file (copy it, or point KEKFile at shared secret storage).
package keys

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/lapis-health/lapis/internal/authdb"
)

// Algorithms of the two key families.
const (
	// AccessTokenAlg signs access tokens (cheap to sign and verify).
	AccessTokenAlg = jose.ES256
	// IDTokenAlg signs OpenID Connect id_tokens (RS256 is required).
	IDTokenAlg = jose.RS256
)

// KEKFile is the name of the key-encryption-key file in the data directory.
const KEKFile = "auth-kek"

// activeTTL is how long the id of the active key is cached: a rotation by
// another process is picked up within this time.
const activeTTL = time.Second

// DefaultRetain is how long a retired public key stays published by
// default: longer than any token signed with it lives.
const DefaultRetain = 2 * time.Hour

// Store is the storage the manager needs (implemented by authdb.DB).
type Store interface {
	SigningKeys(ctx context.Context) ([]authdb.SigningKey, error)
	ActiveKID(ctx context.Context, alg string) (string, error)
	AddSigningKeys(ctx context.Context, keys []authdb.SigningKey, retire bool, publishUntil time.Time) error
}

// ErrUnknownKey is returned for a kid that is not (or no longer) published.
var ErrUnknownKey = errors.New("keys: unknown key")

// Manager signs with the active keys and resolves published public keys.
// It is safe for concurrent use.
type Manager struct {
	store  Store
	kek    cipher.AEAD
	retain time.Duration

	mu       sync.Mutex
	pub      map[string]*jose.JSONWebKey // published public keys by kid
	signers  map[signerKey]jose.Signer
	active   map[string]activeKID // by alg
	lastLoad time.Time
}

type signerKey struct{ kid, typ string }

type activeKID struct {
	kid     string
	checked time.Time
}

// Options configure a Manager.
type Options struct {
	// KEKFile is the key-encryption-key file; created (0600) if absent
	// and the database holds no signing keys yet.
	KEKFile string
	// KEK, when set, is the key-encryption key itself (64 hex digits, as
	// from LAPIS_KEK); it takes precedence over KEKFile.
	KEK string
	// Retain is how long retired public keys stay published (default
	// DefaultRetain); it must exceed the longest token lifetime.
	Retain time.Duration
}

// Open loads the KEK, creates the signing keys on first start, and returns
// a Manager.
//
// A key-encryption key is generated only for a database without signing
// keys: an instance that joins a database whose keys were sealed with
// another key, or that cannot find the key the database needs, refuses to
// open with an error that says how to share the key (every instance of a
// cluster needs the same one).
func Open(ctx context.Context, store Store, opts Options) (*Manager, error) {
	stored, err := store.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	var kek cipher.AEAD
	source := "LAPIS_KEK"
	switch {
	case opts.KEK != "":
		if kek, err = parseKEK(opts.KEK); err != nil {
			return nil, errors.New("keys: LAPIS_KEK must be 64 hex digits (a 256-bit key)")
		}
	case len(stored) > 0 && !fileExists(opts.KEKFile):
		return nil, fmt.Errorf("keys: the database holds signing keys but the key-encryption key %s does not exist; give this instance the key the others use (--kek-file or LAPIS_KEK)", opts.KEKFile)
	default:
		source = opts.KEKFile
		if kek, err = LoadKEK(opts.KEKFile); err != nil {
			return nil, err
		}
	}
	m := &Manager{store: store, kek: kek, retain: opts.Retain, pub: map[string]*jose.JSONWebKey{},
		signers: map[signerKey]jose.Signer{}, active: map[string]activeKID{}}
	if m.retain <= 0 {
		m.retain = DefaultRetain
	}
	for _, k := range stored {
		if len(k.PrivateEnc) == 0 || !k.RetiredAt.IsZero() {
			continue
		}
		if _, err := m.decrypt(k); err != nil {
			return nil, fmt.Errorf("keys: the key-encryption key from %s cannot open the stored signing keys; every instance must use the same key (--kek-file or LAPIS_KEK)", source)
		}
	}
	var missing []authdb.SigningKey
	for _, alg := range []jose.SignatureAlgorithm{AccessTokenAlg, IDTokenAlg} {
		if _, err := store.ActiveKID(ctx, string(alg)); errors.Is(err, authdb.ErrNotFound) {
			k, err := m.generate(alg)
			if err != nil {
				return nil, err
			}
			missing = append(missing, k)
		} else if err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		if err := store.AddSigningKeys(ctx, missing, false, time.Time{}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// LoadKEK reads the 256-bit key-encryption key from path, creating it
// with mode 0600 if it does not exist. A file readable by group or others
// is refused.
func LoadKEK(path string) (cipher.AEAD, error) {
	if path == "" {
		return nil, errors.New("keys: no key-encryption-key file configured")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if ferr == nil {
			_, ferr = f.WriteString(hex.EncodeToString(key) + "\n")
			if cerr := f.Close(); ferr == nil {
				ferr = cerr
			}
			if ferr != nil {
				return nil, fmt.Errorf("keys: writing %s: %w", path, ferr)
			}
		} else if !errors.Is(ferr, fs.ErrExist) { // else: lost a creation race; read the winner's
			return nil, fmt.Errorf("keys: %w", ferr)
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: %s is accessible by group or others (mode %o); chmod 600 it", path, st.Mode().Perm())
	}
	kek, err := parseKEK(string(b))
	if err != nil {
		return nil, fmt.Errorf("keys: %s does not hold a 256-bit hex key", path)
	}
	return kek, nil
}

// parseKEK makes the AEAD of a 256-bit key written as 64 hex digits.
func parseKEK(s string) (cipher.AEAD, error) {
	key, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) != 32 {
		return nil, errors.New("not a 256-bit hex key")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// generate creates a key pair for alg and encrypts its private half.
func (m *Manager) generate(alg jose.SignatureAlgorithm) (authdb.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return authdb.SigningKey{}, fmt.Errorf("keys: unsupported algorithm %s", alg)
	}
	if err != nil {
		return authdb.SigningKey{}, err
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return authdb.SigningKey{}, err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return authdb.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return authdb.SigningKey{}, err
	}
	nonce := make([]byte, m.kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return authdb.SigningKey{}, err
	}
	sealed := m.kek.Seal(nonce, nonce, der, aad(pub.KeyID, string(alg)))
	return authdb.SigningKey{KID: pub.KeyID, Alg: string(alg), PublicJWK: string(pubJSON),
		PrivateEnc: []byte(base64.StdEncoding.EncodeToString(sealed)), CreatedAt: time.Now()}, nil
}

func aad(kid, alg string) []byte { return []byte("lapis-signing-key\x00" + kid + "\x00" + alg) }

// decrypt opens a stored private key.
func (m *Manager) decrypt(k authdb.SigningKey) (crypto.Signer, error) {
	sealed, err := base64.StdEncoding.DecodeString(string(k.PrivateEnc))
	ns := m.kek.NonceSize()
	if err != nil || len(sealed) < ns {
		return nil, fmt.Errorf("keys: stored key %s is corrupt", k.KID)
	}
	der, err := m.kek.Open(nil, sealed[:ns], sealed[ns:], aad(k.KID, k.Alg))
	if err != nil {
		return nil, fmt.Errorf("keys: cannot decrypt key %s (wrong key-encryption key?)", k.KID)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: stored key %s: %w", k.KID, err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: stored key %s is not a signing key", k.KID)
	}
	return s, nil
}

// activeKID returns the id of the active key for alg, cached for activeTTL.
func (m *Manager) activeKID(ctx context.Context, alg jose.SignatureAlgorithm) (string, error) {
	now := time.Now()
	m.mu.Lock()
	a, ok := m.active[string(alg)]
	m.mu.Unlock()
	if ok && now.Sub(a.checked) < activeTTL {
		return a.kid, nil
	}
	kid, err := m.store.ActiveKID(ctx, string(alg))
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.active[string(alg)] = activeKID{kid: kid, checked: now}
	m.mu.Unlock()
	return kid, nil
}

// Sign signs payload with the active key for alg, with the JOSE header
// typ (e.g. "at+jwt" or "JWT") and the key's kid, and returns the compact
// serialization. ECDSA signatures always come in their low-S form (see
// LowS).
func (m *Manager) Sign(ctx context.Context, alg jose.SignatureAlgorithm, typ string, payload []byte) (string, error) {
	kid, err := m.activeKID(ctx, alg)
	if err != nil {
		return "", err
	}
	sk := signerKey{kid, typ}
	m.mu.Lock()
	s := m.signers[sk]
	m.mu.Unlock()
	if s == nil {
		if s, err = m.newSigner(ctx, alg, kid, typ); err != nil {
			return "", err
		}
		m.mu.Lock()
		m.signers[sk] = s
		m.mu.Unlock()
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return "", err
	}
	// crypto/ecdsa picks s or n−s at random: keep the one form the
	// verifier accepts (lows.go).
	return normalizeLowS(alg, compact)
}

func (m *Manager) newSigner(ctx context.Context, alg jose.SignatureAlgorithm, kid, typ string) (jose.Signer, error) {
	all, err := m.store.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range all {
		if k.KID != kid {
			continue
		}
		if k.Alg != string(alg) {
			return nil, fmt.Errorf("keys: key %s is %s, not %s", kid, k.Alg, alg)
		}
		priv, err := m.decrypt(k)
		if err != nil {
			return nil, err
		}
		var pub jose.JSONWebKey
		if err := pub.UnmarshalJSON([]byte(k.PublicJWK)); err != nil {
			return nil, fmt.Errorf("keys: stored public key %s: %w", k.KID, err)
		}
		m.mu.Lock()
		if m.pub[kid] == nil { // our own new tokens always verify here
			m.pub[kid] = &pub
		}
		m.mu.Unlock()
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
		return jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg)}}, opts)
	}
	return nil, ErrUnknownKey
}

// reloadEvery bounds how often an unknown kid triggers a reload.
const reloadEvery = 50 * time.Millisecond

// Forget drops the cached public keys and active key ids: the next use
// reads them from the database again (the keys were replaced, e.g. by
// lapis sandbox reset; the verifier calls it on a revocation-log reset).
func (m *Manager) Forget() {
	m.mu.Lock()
	clear(m.pub)
	clear(m.active)
	m.lastLoad = time.Time{}
	m.mu.Unlock()
}

// PublicKey returns the published public key with id kid. Unknown ids
// reload the key list (at most once per 50 ms, so a key rotated in by
// another instance is found at once while junk kids cannot hammer the
// database); keys whose publication ended are forgotten.
func (m *Manager) PublicKey(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	m.mu.Lock()
	k := m.pub[kid]
	fresh := time.Since(m.lastLoad) < reloadEvery
	m.mu.Unlock()
	if k != nil {
		return k, nil
	}
	if fresh {
		return nil, ErrUnknownKey
	}
	set, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	for i := range set.Keys {
		if set.Keys[i].KeyID == kid {
			return &set.Keys[i], nil
		}
	}
	return nil, ErrUnknownKey
}

// load reads the published keys and refreshes the public-key cache.
func (m *Manager) load(ctx context.Context) (jose.JSONWebKeySet, error) {
	all, err := m.store.SigningKeys(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(all))}
	pub := make(map[string]*jose.JSONWebKey, len(all))
	for _, k := range all {
		var j jose.JSONWebKey
		if err := j.UnmarshalJSON([]byte(k.PublicJWK)); err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("keys: stored public key %s: %w", k.KID, err)
		}
		set.Keys = append(set.Keys, j)
		pub[k.KID] = &set.Keys[len(set.Keys)-1]
	}
	m.mu.Lock()
	m.pub, m.lastLoad = pub, time.Now()
	m.mu.Unlock()
	return set, nil
}

// JWKS returns the published public keys (active and retired-but-retained),
// read fresh from the database.
func (m *Manager) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	return m.load(ctx)
}

// Rotate generates new access-token and id_token keys, makes them active,
// and keeps the previous public keys published for the retention period.
// Running servers switch to the new keys within a second.
func (m *Manager) Rotate(ctx context.Context) error {
	var fresh []authdb.SigningKey
	for _, alg := range []jose.SignatureAlgorithm{AccessTokenAlg, IDTokenAlg} {
		k, err := m.generate(alg)
		if err != nil {
			return err
		}
		fresh = append(fresh, k)
	}
	return m.store.AddSigningKeys(ctx, fresh, true, time.Now().Add(m.retain))
}

// Ready returns nil when the active key of every algorithm signs (a
// readiness check: the keys are in the database and this instance's
// key-encryption key opens them).
func (m *Manager) Ready(ctx context.Context) error {
	for _, alg := range []jose.SignatureAlgorithm{AccessTokenAlg, IDTokenAlg} {
		if _, err := m.Sign(ctx, alg, "JWT", []byte("{}")); err != nil {
			return err
		}
	}
	return nil
}

// ResolveKEK returns the server's key-encryption key for sealing other
// secrets (the portal's TOTP secrets, webhook signing secrets): hexKEK
// (LAPIS_KEK) when set, otherwise the file at path, created when missing
// (the same key, found the same way, as for the signing keys).
func ResolveKEK(path, hexKEK string) (cipher.AEAD, error) {
	if hexKEK != "" {
		kek, err := parseKEK(hexKEK)
		if err != nil {
			return nil, errors.New("keys: LAPIS_KEK must be 64 hex digits (a 256-bit key)")
		}
		return kek, nil
	}
	return LoadKEK(path)
}
