package fhirtime

import (
	"testing"
	"time"
)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestParse(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi string
		prec   Precision
	}{
		{"2015", "2015-01-01T00:00:00Z", "2015-12-31T23:59:59.999Z", Year},
		{"2016-02", "2016-02-01T00:00:00Z", "2016-02-29T23:59:59.999Z", Month},
		{"2015-06-15", "2015-06-15T00:00:00Z", "2015-06-15T23:59:59.999Z", Day},
		{"2015-06-15T10:30", "2015-06-15T10:30:00Z", "2015-06-15T10:30:59.999Z", Minute},
		{"2015-06-15T10:30:05Z", "2015-06-15T10:30:05Z", "2015-06-15T10:30:05.999Z", Second},
		{"2015-06-15T10:30:05.12+02:00", "2015-06-15T08:30:05.120Z", "2015-06-15T08:30:05.120Z", Millisecond},
		{"2015-06-15T10:30:05-05:00", "2015-06-15T15:30:05Z", "2015-06-15T15:30:05.999Z", Second},
	}
	for _, c := range cases {
		r, err := Parse(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if r.Lo != ms(c.lo) || r.Hi != ms(c.hi) || r.Precision != c.prec {
			t.Errorf("%s: got [%d,%d] p%d want [%d,%d] p%d", c.in, r.Lo, r.Hi, r.Precision, ms(c.lo), ms(c.hi), c.prec)
		}
	}
	for _, bad := range []string{"", "15", "2015-13", "2015-02-30", "2015-01-01T25:00", "2015-01-01T10", "abc", "2015-01-01 10:00", "2015-1-1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: expected error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"2015", "2015-06-15T10:30:05.12+02:00", "2015-02-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err == nil && r.Lo > r.Hi {
			t.Fatalf("%q: lo > hi", s)
		}
	})
}
