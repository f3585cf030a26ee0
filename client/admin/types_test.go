package admin

import (
	"encoding/json"
	"testing"
	"time"
)

// TestDuration: durations travel as strings and are read from strings or
// whole seconds, bounded.
func TestDuration(t *testing.T) {
	b, err := json.Marshal(RotateRequest{Grace: ptr(Duration(90 * time.Minute))})
	if err != nil || string(b) != `{"grace":"1h30m0s"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	for in, want := range map[string]time.Duration{`"720h"`: 720 * time.Hour, `3600`: time.Hour, `0`: 0, `"-1s"`: -time.Second} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v", in, time.Duration(d), err)
		}
	}
	for _, in := range []string{`"soon"`, `1.5`, `true`, `99999999999999`, `"1000000h"`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted as %v", in, time.Duration(d))
		}
	}
}

func ptr[T any](v T) *T { return &v }
