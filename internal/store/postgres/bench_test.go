package postgres_test

import (
	"testing"

	"github.com/lapis-health/lapis/internal/store/storetest"
)

func BenchmarkPut(b *testing.B) { storetest.BenchPut(b, openStore(b)) }

func BenchmarkRead(b *testing.B) { storetest.BenchRead(b, openStore(b)) }

func BenchmarkSearch(b *testing.B) {
	s := openStore(b)
	storetest.BenchSearch(b, s, s.Analyze)
}

func BenchmarkHistoryPatient(b *testing.B) { storetest.BenchHistory(b, openStore(b)) }
