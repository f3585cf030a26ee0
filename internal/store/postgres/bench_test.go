package postgres_test

import (
	"testing"

	"github.com/lapis-health/lapis/internal/store/storetest"
)

func BenchmarkPut(b *testing.B) { storetest.BenchPut(b, openBench(b)) }

func BenchmarkRead(b *testing.B) { storetest.BenchRead(b, openBench(b)) }

func BenchmarkSearch(b *testing.B) {
	s := openBench(b)
	storetest.SearchFixture(b, s)
	if _, err := s.Pool().Exec(b.Context(), "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	storetest.BenchSearch(b, s)
}
