package plantest_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
	"github.com/lapis-health/lapis/internal/store/postgres"
)

// BenchmarkShapes measures the reference searches (searches) through the
// resource service, on a store filled from empty through service
// transactions, on every dialect: the per-request cost of the search path
// below HTTP (SQL, loading, includes, the Bundle's JSON). Besides the
// time per search it reports the CPU time per search of this process
// (go-µs/op) and, on PostgreSQL, of the database's server processes
// (pg-µs/op), read from /proc on Linux: figures that, unlike the time,
// hold on a machine busy with other work.
func BenchmarkShapes(b *testing.B) {
	files, reg := setup(b)
	for name, open := range dialects(b) {
		b.Run(name, func(b *testing.B) {
			st := open(b)
			defer st.Close()
			svc := service(b, reg, st)
			for _, f := range files {
				post(b, svc, f)
			}
			pat := firstPatient(b, svc)
			for _, s := range searches(pat) {
				v, err := url.ParseQuery(s.query)
				if err != nil {
					b.Fatal(err)
				}
				b.Run(s.typ+"?"+s.query, func(b *testing.B) {
					self0, pg0 := cpuTimes(st)
					for b.Loop() {
						res, err := svc.Search(context.Background(), s.typ, v, true)
						if err != nil {
							b.Fatal(err)
						}
						_ = res.JSON()
					}
					self1, pg1 := cpuTimes(st)
					b.ReportMetric(float64((self1-self0).Microseconds())/float64(b.N), "go-µs/op")
					if name == "postgres" {
						b.ReportMetric(float64((pg1-pg0).Microseconds())/float64(b.N), "pg-µs/op")
					}
				})
			}
		})
	}
}

// cpuTimes returns the CPU time (user and system) used so far by this
// process and by the PostgreSQL server processes connected to st's
// database (0 when st is not on PostgreSQL or /proc cannot say).
func cpuTimes(st store.Store) (self, pg time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	ps, ok := st.(*postgres.Store)
	if !ok {
		return self, 0
	}
	rows, err := ps.Pool().Query(context.Background(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err != nil {
		return self, 0
	}
	defer rows.Close()
	for rows.Next() {
		var pid int32
		if rows.Scan(&pid) != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (in parentheses): utime and
		// stime are the 12th and 13th, in clock ticks (USER_HZ, 100).
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		var ut, stm int64
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &stm)
		pg += time.Duration(ut+stm) * 10 * time.Millisecond
	}
	return self, pg
}
