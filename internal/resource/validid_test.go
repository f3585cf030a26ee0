package resource

import (
	"regexp"
	"strings"
	"testing"
)

// TestValidIDGrammar holds ValidID to the FHIR id grammar it replaced a
// regular expression for: the same answer on ids at the length limits,
// every ASCII byte, a trailing newline, non-ASCII letters and the
// dot-segments.
func TestValidIDGrammar(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	cases := []string{"", "a", "A-1.b", ".", "..", "...", "a.", strings.Repeat("x", 64), strings.Repeat("x", 65),
		"abc\n", "\nabc", "ab c", "ab/c", "é", "abc\x00", "a_b", "a+b", "a%20b"}
	for c := 0; c < 256; c++ {
		cases = append(cases, "id"+string(rune(c)), string([]byte{byte(c)}))
	}
	for _, s := range cases {
		want := re.MatchString(s) && s != "." && s != ".."
		if got := ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, got, want)
		}
	}
}
