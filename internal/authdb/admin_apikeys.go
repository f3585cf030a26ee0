package authdb

import "time"

// API key statuses, as listings show them.
const (
	APIKeyActive  = "active"
	APIKeyRevoked = "revoked"
	APIKeyExpired = "expired"
	// APIKeyRotated is a key replaced by a successor that is still inside
	// its grace period (until its ExpiresAt).
	APIKeyRotated = "rotated"
	// APIKeySuspended is a key an operator suspended (until resumed).
	APIKeySuspended = "suspended"
)

// Status is the key's status at now: revoked, expired, rotated (replaced
// but still valid for its grace period) or active; the same order of
// precedence as "lapis apikey list".
func (k *APIKey) Status(now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return APIKeyRevoked
	case !k.Valid(now):
		return APIKeyExpired
	case k.Suspended():
		return APIKeySuspended
	case k.ReplacedBy != "":
		return APIKeyRotated
	}
	return APIKeyActive
}
