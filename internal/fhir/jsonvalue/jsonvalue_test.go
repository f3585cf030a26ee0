package jsonvalue

import (
	"encoding/json"
	"testing"
)

func TestAt(t *testing.T) {
	var v any
	json.Unmarshal([]byte(`{"category":[{"coding":[{"code":"a"},{"code":"b"}]},{"coding":{"code":"c"}},{"text":"x"}]}`), &v)
	got := At(v, "category.coding.code")
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("At = %v", got)
	}
	if len(At(v, "nope.x")) != 0 || len(At("s", "a")) != 0 {
		t.Error("missing paths give values")
	}
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		a, b any
		want bool
	}{
		{json.Number("1.0"), json.Number("1"), true},
		{json.Number("1e2"), json.Number("100"), true},
		{json.Number("1"), json.Number("2"), false},
		{map[string]any{"a": []any{"x", true}}, map[string]any{"a": []any{"x", true}}, true},
		{map[string]any{"a": []any{"x"}}, map[string]any{"a": []any{"x", true}}, false},
		{map[string]any{"a": 1}, map[string]any{"b": 1}, false},
		{"x", "x", true},
	} {
		if Equal(c.a, c.b) != c.want {
			t.Errorf("Equal(%v, %v) = %v", c.a, c.b, !c.want)
		}
	}
	if !NumbersEqual("-0.50", "-5e-1") || NumbersEqual("x", "x1") {
		t.Error("NumbersEqual")
	}
}
