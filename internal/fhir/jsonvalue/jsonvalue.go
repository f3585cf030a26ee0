// Package jsonvalue compares and walks decoded JSON values (the any trees
// encoding/json produces, numbers as json.Number).
package jsonvalue

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// Equal compares decoded JSON values; numbers compare by numeric value.
func Equal(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		return NumbersEqual(string(x), string(y))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !Equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}

// NumbersEqual compares two JSON number literals by exact decimal value.
func NumbersEqual(a, b string) bool {
	na, oka := canonicalDecimal(a)
	nb, okb := canonicalDecimal(b)
	return oka && okb && na == nb
}

// canonicalDecimal renders a JSON number literal as sign, digits without
// leading/trailing zeros, and a decimal exponent, so equal values compare
// equal as strings.
func canonicalDecimal(s string) (string, bool) {
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return "", false
		}
		exp = e
		s = s[:i]
	}
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i+1:]
	}
	digits := intPart + frac
	exp -= len(frac)
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", true
	}
	for strings.HasSuffix(digits, "0") {
		digits = digits[:len(digits)-1]
		exp++
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + digits + "e" + strconv.Itoa(exp), true
}

// At returns the values at a dotted path below v, arrays flattened at
// every step ("coding.code" of a CodeableConcept: every coding's code).
func At(v any, path string) []any {
	cur := []any{v}
	for _, seg := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			switch x := m[seg].(type) {
			case nil:
			case []any:
				next = append(next, x...)
			default:
				next = append(next, x)
			}
		}
		cur = next
	}
	return cur
}
