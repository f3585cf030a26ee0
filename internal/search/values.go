package search

import (
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/store"
)

// splitEscaped splits s at every sep that is not preceded by a backslash
// escape. The pieces keep their escapes; pass them to unescape when the
// last split has been made.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip the escaped character
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the search escapes \, \$ \| and \\. A backslash before
// any other character (or at the end) is kept literally.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '$', '|', '\\':
				b.WriteByte(s[i+1])
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

var prefixes = map[string]store.Prefix{
	"eq": store.PrefixEq, "ne": store.PrefixNe, "gt": store.PrefixGt, "lt": store.PrefixLt,
	"ge": store.PrefixGe, "le": store.PrefixLe, "sa": store.PrefixSa, "eb": store.PrefixEb,
	"ap": store.PrefixAp,
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// splitPrefix separates a comparison prefix from an ordered value (number,
// date, quantity). A value starting with two letters must start with a
// known prefix. ok is false for an unknown prefix: two letters followed by
// what a number or date starts with ("xx2015"); a word ("abc", "NaN",
// "today") is left whole, to be refused as not a number or date.
func splitPrefix(s string) (store.Prefix, string, bool) {
	if len(s) >= 2 && isLetter(s[0]) && isLetter(s[1]) {
		p, ok := prefixes[s[:2]]
		if ok {
			return p, s[2:], true
		}
		if len(s) > 2 && strings.IndexByte("0123456789.+-", s[2]) >= 0 {
			return "", s, false
		}
	}
	return store.PrefixEq, s, true
}

var numberRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// parseNumber parses a search number and returns its value and the
// implicit range it denotes: half a unit of the last significant digit on
// either side, half-open at the top ("100" → [99.5, 100.5), "100.00" →
// [99.995, 100.005), "1e2" → [50, 150), "1.0e2" → [95, 105)).
func parseNumber(s string) (v, lo, hi float64, ok bool) {
	if len(s) > 64 || !numberRE.MatchString(s) {
		return 0, 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 400 || e < -400 {
			return 0, 0, 0, false
		}
		exp = e
	}
	decimals := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		decimals = len(mant) - i - 1
	}
	// Exact decimal arithmetic so that "5.4" gives [5.35, 5.45) rather
	// than binary rounding artefacts.
	exact, ok := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
	if !ok {
		return 0, 0, 0, false
	}
	half := big.NewRat(5, 1)
	if k := exp - decimals - 1; k >= 0 {
		half.Mul(half, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil)))
	} else {
		half.Quo(half, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-k)), nil)))
	}
	lo, _ = new(big.Rat).Sub(exact, half).Float64()
	hi, _ = new(big.Rat).Add(exact, half).Float64()
	if hi > lo {
		hi = math.Nextafter(hi, math.Inf(-1))
	}
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return 0, 0, 0, false
	}
	return v, lo, hi, true
}

// numberRange builds the RangeMatch of a number or quantity value.
//
// FHIR R4 (search.html#number): eq, ne and ap use the implicit precision
// range of the value ("100" is [99.5, 100.5)), but the ordering prefixes
// compare with the exact value: "lt100" is "less than exactly 100", so
// lt, gt, le, ge, sa and eb get the degenerate range [v, v]. For ap the
// range is widened by 10% of the value on each side (spec: "within 10% of
// the stated value").
func numberRange(p store.Prefix, v, lo, hi float64) store.RangeMatch {
	switch p {
	case store.PrefixLt, store.PrefixGt, store.PrefixLe, store.PrefixGe, store.PrefixSa, store.PrefixEb:
		return store.RangeMatch{Prefix: p, Lo: v, Hi: v}
	}
	r := store.RangeMatch{Prefix: p, Lo: lo, Hi: hi}
	if p == store.PrefixAp {
		m := math.Abs(v) * 0.1
		r.ApLo, r.ApHi = lo-m, hi+m
	}
	return r
}

// dayMs is the minimum approximation margin for dates.
const dayMs = 24 * 60 * 60 * 1000

// parseDate parses a date search value (without prefix) into a RangeMatch.
// For ap the range is widened on each side by 10% of the distance between
// the value and now, and by at least one day.
func parseDate(p store.Prefix, s string, now time.Time) (store.RangeMatch, bool) {
	// An unescaped '+' in a time zone offset arrives as a space after
	// form decoding; restore it.
	s = strings.ReplaceAll(s, " ", "+")
	r, err := fhirtime.Parse(s)
	if err != nil {
		return store.RangeMatch{}, false
	}
	m := store.RangeMatch{Prefix: p, Lo: float64(r.Lo), Hi: float64(r.Hi)}
	if p == store.PrefixAp {
		n := float64(now.UnixMilli())
		mid := (m.Lo + m.Hi) / 2
		margin := math.Abs(n-mid) * 0.1
		if margin < dayMs {
			margin = dayMs
		}
		m.ApLo = math.Max(m.Lo-margin, float64(store.MinTime))
		m.ApHi = math.Min(m.Hi+margin, float64(store.MaxTime))
	}
	return m, true
}

// isAbsolute reports whether a reference or URL value is absolute.
func isAbsolute(s string) bool {
	if strings.HasPrefix(s, "urn:") {
		return true
	}
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j := 0; j < i; j++ {
		c := s[j]
		if !(isLetter(c) || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

var elementRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$`)
