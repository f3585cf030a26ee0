// Package fhirtime parses FHIR date, dateTime and instant values into the
// time ranges they denote. A value of lower precision denotes the whole
// period: "2015" is every instant of the year 2015. Values without a time
// zone are read as UTC. Ranges are inclusive, in Unix milliseconds.
package fhirtime

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// dateTimeRE is the R4 dateTime grammar (which also covers date and instant).
var dateTimeRE = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]|60)(\.[0-9]+)?)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?$`)

// Precision is the precision a value was written with.
type Precision int

// Precisions, from coarsest to finest.
const (
	Year Precision = iota
	Month
	Day
	Minute
	Second
	Millisecond
)

// Range is an inclusive interval of Unix milliseconds.
type Range struct {
	Lo, Hi    int64
	Precision Precision
}

// QueryValue returns a date or time taken from a URL query as the client
// meant it: spaces around it trimmed, and the '+' of a time zone offset,
// which arrives as a space when the client did not escape it, restored.
func QueryValue(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), " ", "+") }

// Parse parses a FHIR date, dateTime or instant (also accepting hh:mm
// without seconds, as search values may) and returns the range it denotes.
func Parse(s string) (Range, error) {
	if len(s) > 40 || !dateTimeRE.MatchString(s) {
		return Range{}, fmt.Errorf("%q is not a valid FHIR date/dateTime (expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm])", s)
	}
	year, _ := strconv.Atoi(s[0:4])
	if len(s) == 4 {
		lo := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return Range{lo.UnixMilli(), lo.AddDate(1, 0, 0).UnixMilli() - 1, Year}, nil
	}
	month, _ := strconv.Atoi(s[5:7])
	if len(s) == 7 {
		lo := time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
		return Range{lo.UnixMilli(), lo.AddDate(0, 1, 0).UnixMilli() - 1, Month}, nil
	}
	day, _ := strconv.Atoi(s[8:10])
	lo := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if lo.Day() != day {
		return Range{}, fmt.Errorf("%q is not a valid calendar date", s)
	}
	if len(s) == 10 {
		return Range{lo.UnixMilli(), lo.AddDate(0, 0, 1).UnixMilli() - 1, Day}, nil
	}
	rest := s[11:]
	// Split off the zone.
	loc := time.UTC
	zoneAt := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == 'Z' || rest[i] == '+' || rest[i] == '-' {
			zoneAt = i
			break
		}
	}
	clock := rest
	if zoneAt >= 0 {
		clock = rest[:zoneAt]
		z := rest[zoneAt:]
		if z != "Z" {
			h, _ := strconv.Atoi(z[1:3])
			m, _ := strconv.Atoi(z[4:6])
			off := h*3600 + m*60
			if z[0] == '-' {
				off = -off
			}
			loc = time.FixedZone("", off)
		}
	}
	hh, _ := strconv.Atoi(clock[0:2])
	mm, _ := strconv.Atoi(clock[3:5])
	prec := Minute
	ss, ms := 0, 0
	width := time.Minute
	if len(clock) > 5 {
		ss, _ = strconv.Atoi(clock[6:8])
		if ss == 60 {
			ss = 59 // leap second: clamp
		}
		prec = Second
		width = time.Second
		if len(clock) > 8 {
			frac := clock[9:]
			prec = Millisecond
			width = time.Millisecond
			for len(frac) < 3 {
				frac += "0"
			}
			ms, _ = strconv.Atoi(frac[:3])
		}
	}
	t := time.Date(year, time.Month(month), day, hh, mm, ss, ms*int(time.Millisecond), loc)
	return Range{t.UnixMilli(), t.Add(width).UnixMilli() - 1, prec}, nil
}

// FormatInstant formats t as a FHIR instant with millisecond precision in UTC.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
