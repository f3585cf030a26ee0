package sqlite_test

import (
	"context"
	"os"
	"testing"

	"github.com/lapis-health/lapis/internal/store/sqlite"
	"github.com/lapis-health/lapis/internal/store/storetest"
)

func BenchmarkMkDBTmp(b *testing.B) {
	path := os.Getenv("EXPLAIN_DB")
	if path == "" {
		b.Skip()
	}
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	storetest.SearchFixture(b, s)
	if os.Getenv("NOCLOSE") != "" {
		storetest.BenchSearch(b, s)
		os.Exit(0)
	}
	defer s.Close()
	for b.Loop() {
	}
}

func BenchmarkSearchTmp(b *testing.B) {
	s, err := sqlite.Open(context.Background(), os.Getenv("EXPLAIN_DB"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchSearch(b, s)
}
