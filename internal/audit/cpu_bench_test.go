package audit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuMeter sums the CPU time of this process and of the PostgreSQL server
// processes serving it (read from /proc, where the server runs on this
// machine) over the measured parts of a benchmark.
type cpuMeter struct {
	server         []int
	self, srv      time.Duration
	at0, srvAt0    time.Duration
	serverReadable bool
}

func (m *cpuMeter) start() {
	m.at0 = selfCPU()
	m.srvAt0, m.serverReadable = serverCPU(m.server)
}

func (m *cpuMeter) stop() {
	m.self += selfCPU() - m.at0
	if t, ok := serverCPU(m.server); ok && m.serverReadable {
		m.srv += t - m.srvAt0
	}
}

// report adds the CPU per record of b's iterations of n records each.
func (m *cpuMeter) report(b *testing.B, n int) {
	records := float64(b.N * n)
	b.ReportMetric(float64(m.self.Microseconds())/records, "cpu-µs/record")
	if len(m.server) > 0 && m.serverReadable {
		b.ReportMetric(float64(m.srv.Microseconds())/records, "server-cpu-µs/record")
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time of the processes pids (false when /proc does
// not have them all).
func serverCPU(pids []int) (time.Duration, bool) {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		// Fields after the command (which may hold spaces): utime is the
		// 14th field, stime the 15th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) < 13 {
			return 0, false
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ticks) * 10 * time.Millisecond, len(pids) > 0
}

// serverPIDs are the PostgreSQL backends connected to the benchmark's
// database.
func (e *env) serverPIDs(b *testing.B) []int {
	b.Helper()
	rows, err := e.db.db.QueryContext(context.Background(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}
