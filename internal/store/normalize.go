package store

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// NormalizeString folds a string for string-parameter matching: Unicode
// decomposition with combining marks removed (accent-insensitive), lower case
// (case-insensitive), and runs of whitespace collapsed to one space.
// Extraction and search parsing must both use it so that values compare equal.
func NormalizeString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		s = norm.NFD.String(s)
	}
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
