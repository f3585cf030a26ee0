// Package fhirid checks FHIR resource ids. It imports nothing of Lapis, so
// every layer, the audit trail included, may use it.
package fhirid

// Valid reports whether s is a FHIR id: 1 to 64 characters of
// [A-Za-z0-9\-\.].
func Valid(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
