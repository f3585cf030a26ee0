package validate

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lapis-health/lapis/internal/fhir/fhirid"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// primCheck validates one primitive JSON value and returns a message for
// API users, or "" if valid.
type primCheck func(val any) string

const maxStringBytes = 1 << 20 // R4: strings SHALL NOT exceed 1 MB

var formatHints = map[string]string{
	"date":         "expected YYYY, YYYY-MM or YYYY-MM-DD",
	"dateTime":     "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz with a time zone",
	"instant":      "expected YYYY-MM-DDThh:mm:ss(.sss)+zz:zz or ...Z, with a time zone",
	"time":         "expected hh:mm:ss(.sss)",
	"id":           "expected 1-64 characters from A-Z, a-z, 0-9, '-' and '.'",
	"code":         "expected non-empty text without leading, trailing or repeated whitespace",
	"oid":          "expected urn:oid: followed by a dotted OID, e.g. urn:oid:1.2.3.4",
	"uuid":         "expected urn:uuid: followed by a lower-case UUID",
	"uri":          "expected a URI without whitespace",
	"url":          "expected a URL without whitespace",
	"canonical":    "expected a canonical URL without whitespace",
	"base64Binary": "expected base64-encoded data",
}

func anchored(re string) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + re + `)$`)
}

func buildPrimChecks(reg *definitions.Registry) map[string]primCheck {
	m := map[string]primCheck{}
	for _, t := range []string{"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
		"integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid"} {
		if !reg.IsPrimitive(t) {
			continue
		}
		t := t
		switch t {
		case "boolean":
			m[t] = checkBoolean
		case "decimal":
			m[t] = checkDecimal
		case "integer":
			m[t] = intCheck(t, math.MinInt32, math.MaxInt32, intGrammar(reg, t))
		case "unsignedInt":
			m[t] = intCheck(t, 0, math.MaxInt32, intGrammar(reg, t))
		case "positiveInt":
			m[t] = intCheck(t, 1, math.MaxInt32, intGrammar(reg, t))
		case "string", "markdown":
			m[t] = stringCheck(t, checkString)
		case "uri", "url", "canonical":
			m[t] = stringCheck(t, noWhitespace)
		case "code":
			m[t] = stringCheck(t, checkCode)
		case "id":
			m[t] = stringCheck(t, checkID)
		case "base64Binary":
			m[t] = stringCheck(t, checkBase64)
		default:
			re := reg.PrimitiveRegex(t)
			if re == "" {
				continue
			}
			rx := anchored(re)
			switch t {
			case "date", "dateTime", "instant":
				// The regexes admit impossible days (2021-02-29).
				m[t] = stringCheck(t, func(s string) bool {
					if !rx.MatchString(s) {
						return false
					}
					_, err := fhirtime.Parse(s)
					return err == nil
				})
			default:
				m[t] = stringCheck(t, rx.MatchString)
			}
		}
	}
	return m
}

func quote(s string) string {
	if len(s) > 80 {
		// keep messages short; cut at a rune boundary
		cut := 77
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}

func stringCheck(typ string, ok func(string) bool) primCheck {
	hint := formatHints[typ]
	return func(val any) string {
		s, isStr := val.(string)
		if !isStr {
			return fmt.Sprintf("Expected a JSON string (%s), found %s", typ, kindOf(val))
		}
		if s == "" {
			return "Empty strings are not allowed; omit the element instead"
		}
		if (typ == "string" || typ == "markdown") && len(s) > maxStringBytes {
			return fmt.Sprintf("String is too long (%d bytes; the maximum is 1 MB)", len(s))
		}
		if !ok(s) {
			if hint != "" {
				return fmt.Sprintf("Invalid %s value %s (%s)", typ, quote(s), hint)
			}
			return fmt.Sprintf("Invalid %s value %s", typ, quote(s))
		}
		return ""
	}
}

func checkBoolean(val any) string {
	if _, ok := val.(bool); ok {
		return ""
	}
	return fmt.Sprintf("Expected a JSON boolean (true or false), found %s", kindOf(val))
}

func checkDecimal(val any) string {
	switch x := val.(type) {
	case json.Number:
		_, err := strconv.ParseFloat(string(x), 64)
		switch {
		case isRangeErr(err):
			// R4 datatypes.html#decimal: the limits of xs:double (IEEE
			// 754) apply. Lapis could neither index nor search it.
			return fmt.Sprintf("Decimal value %s is out of range: its magnitude must be at most about 1.8e308 (the IEEE 754 double limit R4 applies to decimals)", quote(string(x)))
		case err != nil:
			return fmt.Sprintf("Invalid decimal value %s", quote(string(x)))
		}
		return ""
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "Invalid decimal value"
		}
		return ""
	}
	return fmt.Sprintf("Expected a JSON number (decimal), found %s", kindOf(val))
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// intGrammars are the R4 lexical forms of the integer types, used when the
// definitions carry none (R4 datatypes.html: integer admits "-0",
// unsignedInt and positiveInt have no sign).
var intGrammars = map[string]string{
	"integer":     `-?([0]|([1-9][0-9]*))`,
	"unsignedInt": `[0]|([1-9][0-9]*)`,
	"positiveInt": `\+?[1-9][0-9]*`,
}

// intGrammar returns the anchored lexical form of an integer type: the
// regex of its definition, else intGrammars.
func intGrammar(reg *definitions.Registry, typ string) *regexp.Regexp {
	if re := reg.PrimitiveRegex(typ); re != "" {
		return anchored(re)
	}
	return anchored(intGrammars[typ])
}

// intCheck validates an integer type: a whole JSON number within [min,
// max] written in the type's lexical form (grammar): "-0" is an integer
// (R4: -?([0]|([1-9][0-9]*))) but not an unsignedInt or positiveInt.
func intCheck(typ string, min, max int64, grammar *regexp.Regexp) primCheck {
	rangeMsg := fmt.Sprintf("must be between %d and %d", min, max)
	formMsg := "expected a whole number without leading zeros"
	if min >= 0 {
		formMsg = "expected a whole number without sign or leading zeros"
	}
	return func(val any) string {
		switch x := val.(type) {
		case json.Number:
			s := string(x)
			if strings.ContainsAny(s, ".eE") {
				return fmt.Sprintf("Invalid %s value %s (expected a whole number)", typ, quote(s))
			}
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Sprintf("Invalid %s value %s (%s)", typ, quote(s), rangeMsg)
			}
			if i < min || i > max {
				return fmt.Sprintf("Invalid %s value %d (%s)", typ, i, rangeMsg)
			}
			if !grammar.MatchString(s) {
				return fmt.Sprintf("Invalid %s value %s (%s)", typ, quote(s), formMsg)
			}
			return ""
		case float64:
			if x != math.Trunc(x) || math.IsInf(x, 0) {
				return fmt.Sprintf("Invalid %s value %v (expected a whole number)", typ, x)
			}
			if x < float64(min) || x > float64(max) {
				return fmt.Sprintf("Invalid %s value %v (%s)", typ, x, rangeMsg)
			}
			if min >= 0 && math.Signbit(x) {
				return fmt.Sprintf("Invalid %s value \"-0\" (%s)", typ, formMsg)
			}
			return ""
		default:
			return fmt.Sprintf("Expected a JSON number (%s), found %s", typ, kindOf(val))
		}
	}
}

// checkString implements [ \r\n\t\S]+ : any non-empty text; of the
// whitespace characters only space, CR, LF and TAB are allowed.
func checkString(s string) bool {
	return !strings.ContainsRune(s, '\f')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// noWhitespace implements \S* .
func noWhitespace(s string) bool {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			return false
		}
	}
	return true
}

// checkCode implements [^\s]+(\s[^\s]+)* .
func checkCode(s string) bool {
	if isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// checkID implements [A-Za-z0-9\-\.]{1,64}, but lets the empty string
// pass.
func checkID(s string) bool { return s == "" || fhirid.Valid(s) }

// checkBase64 implements (\s*([0-9a-zA-Z\+/=]){4}\s*)+ : groups of four
// base64 characters, optionally separated by whitespace.
func checkBase64(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			n++
		case isSpace(c):
			if n%4 != 0 {
				return false
			}
		default:
			return false
		}
	}
	return n > 0 && n%4 == 0
}
