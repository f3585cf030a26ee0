package database_test

import (
	"testing"

	"github.com/lapis-health/lapis/internal/database"
)

func TestSQLitePath(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:lapis.db":                   "lapis.db",
		"sqlite:/var/lib/lapis.db":          "/var/lib/lapis.db",
		"sqlite:///var/lib/lapis.db":        "/var/lib/lapis.db",
		"file:/tmp/x.db?_pragma=foo":        "/tmp/x.db",
		"file://localhost/tmp/x%20y.db":     "/tmp/x y.db",
		"sqlite:relative/dir/lapis.db#frag": "relative/dir/lapis.db",
	} {
		got, err := database.SQLitePath(in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := database.SQLitePath("file://otherhost/x.db"); err == nil {
		t.Error("remote host accepted")
	}
}
