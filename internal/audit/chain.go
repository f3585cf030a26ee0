package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Genesis is the previous hash of the first record of every chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Hash is the link hash of a record: the hex SHA-256 of a domain tag, the
// chain id, the sequence number, the previous record's hash and the
// record's stored bytes (the AuditEvent JSON exactly as stored), separated
// by NUL bytes (none of the first four can contain one).
func Hash(chain string, seq int64, prev string, body []byte) string {
	h := sha256.New()
	h.Write([]byte("lapis-audit-v1\x00"))
	h.Write([]byte(chain))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(seq, 10)))
	h.Write([]byte{0})
	h.Write([]byte(prev))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}
