package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Genesis is the previous hash of the first record of every chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Hash is the link hash of a record of format 1: the hex SHA-256 of a
// domain tag, the chain id, the sequence number, the previous record's
// hash and the record's stored bytes (the AuditEvent JSON exactly as
// stored), separated by NUL bytes (none of the first four can contain one).
func Hash(chain string, seq int64, prev string, body []byte) string {
	return linkHash("lapis-audit-v1", body, chain, strconv.FormatInt(seq, 10), prev)
}

// HashV2 is the link hash of a record of format 2, which also covers the
// chain's copy watermark when the record was written (records seq <=
// watermark were then stored as AuditEvent resources): like Hash, with the
// tag "lapis-audit-v2" and the watermark in decimal after the previous hash.
func HashV2(chain string, seq int64, prev string, watermark int64, body []byte) string {
	return linkHash("lapis-audit-v2", body, chain, strconv.FormatInt(seq, 10), prev, strconv.FormatInt(watermark, 10))
}

// linkHash is the hex SHA-256 of tag, each field and then body, with a NUL
// byte after the tag and after each field (none of them contains one).
func linkHash(tag string, body []byte, fields ...string) string {
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write([]byte{0})
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// LinkHash computes the hash of r as if it were stored at seq, by its
// format.
func (r *Row) LinkHash(seq int64) string {
	if r.Format >= 2 {
		return HashV2(r.Chain, seq, r.PrevHash, r.Watermark, r.Body)
	}
	return Hash(r.Chain, seq, r.PrevHash, r.Body)
}

// linkScratch computes HashV2 for the writer goroutine, in a buffer kept
// from one record to the next: the fields and the body are hashed in one
// piece, with no allocation but the returned string (HashV2 makes seven
// per record). Not safe for concurrent use.
type linkScratch struct{ buf []byte }

// hashV2 is HashV2(chain, seq, prev, watermark, body).
func (s *linkScratch) hashV2(chain string, seq int64, prev string, watermark int64, body []byte) string {
	b := append(s.buf[:0], "lapis-audit-v2\x00"...)
	b = append(append(b, chain...), 0)
	b = append(strconv.AppendInt(b, seq, 10), 0)
	b = append(append(b, prev...), 0)
	b = append(strconv.AppendInt(b, watermark, 10), 0)
	b = append(b, body...)
	s.buf = b
	sum := sha256.Sum256(b)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}
