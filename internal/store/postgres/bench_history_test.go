package postgres_test

import (
	"testing"

	"github.com/lapis-health/lapis/internal/store/storetest"
)

func BenchmarkHistoryPatient(b *testing.B) {
	s := openBench(b)
	storetest.HistoryFixture(b, s)
	if err := s.Analyze(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Run("system", func(b *testing.B) { storetest.BenchHistoryPatient(b, s, "") })
	b.Run("type", func(b *testing.B) { storetest.BenchHistoryPatient(b, s, "Observation") })
}
