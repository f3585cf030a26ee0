// Package fhirid checks FHIR resource ids, type names and relative
// references. It imports nothing of Lapis, so every layer, the audit trail
// included, may use it.
package fhirid

import "strings"

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

// ValidType reports whether s reads as a resource type name: an ASCII
// capital letter, then letters and digits, at most 64 characters.
func ValidType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 64 {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// SplitRelative parses a relative reference "Type/id" or
// "Type/id/_history/vid" into its type and id.
func SplitRelative(s string) (typ, id string, ok bool) {
	i := strings.IndexByte(s, '/')
	if i <= 0 {
		return "", "", false
	}
	typ, rest := s[:i], s[i+1:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		h := rest[j+1:]
		if !strings.HasPrefix(h, "_history/") || len(h) == len("_history/") || strings.IndexByte(h[len("_history/"):], '/') >= 0 {
			return "", "", false
		}
		rest = rest[:j]
	}
	if !ValidType(typ) || !Valid(rest) {
		return "", "", false
	}
	return typ, rest, true
}
