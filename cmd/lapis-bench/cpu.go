package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverCPU returns a function that reads the CPU time (user + system)
// the lapis server serving dataDir has used so far, or nil when it cannot
// be found (not Linux). Throughput on a shared machine moves with the
// other load; CPU time per answer much less, so the real-path report
// gives both.
func serverCPU(dataDir string) func() time.Duration {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		serve, dir := false, false
		for i, a := range args {
			serve = serve || a == "serve"
			dir = dir || a == "--data-dir="+dataDir || (a == "--data-dir" && i+1 < len(args) && args[i+1] == dataDir)
		}
		if !serve || !dir {
			continue
		}
		stat := filepath.Join(filepath.Dir(p), "stat")
		return func() time.Duration { return procCPU(stat) }
	}
	return nil
}

// procCPU reads utime + stime from /proc/PID/stat (clock ticks of
// 1/100 s, the USER_HZ of Linux on every common platform).
func procCPU(stat string) time.Duration {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// postgresCPU returns a function that reads the CPU time (user + system)
// the PostgreSQL backends serving the database at dbURL have used so far
// (the server's other databases apart), or nil when it cannot connect. It
// sums the backends connected when it is called, so a phase's figure
// misses the work of a connection closed during it; the pools of the
// measured server keep theirs. PostgreSQL must run on this machine
// (/proc).
func postgresCPU(ctx context.Context, dbURL string) (func() time.Duration, func()) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, func() {}
	}
	read := func() time.Duration {
		rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
		if err != nil {
			return 0
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return 0
		}
		var total time.Duration
		for _, pid := range pids {
			total += procCPU(filepath.Join("/proc", strconv.Itoa(int(pid)), "stat"))
		}
		return total
	}
	return read, func() { conn.Close(context.Background()) }
}
