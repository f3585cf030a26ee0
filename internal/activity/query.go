package activity

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/lapis-health/lapis/internal/database"
)

// Classes are the status classes of a Point, in order: 2xx, 3xx, 4xx,
// 5xx (a status below 200 counts as 2xx, above 599 as 5xx).
var Classes = [4]string{"2xx", "3xx", "4xx", "5xx"}

// classIndex is the index in Classes of status.
func classIndex(status int) int { return min(max(status/100, 2), 5) - 2 }

// MaxPoints bounds the steps of one Series.
const MaxPoints = 2000

// Point is the requests of one step of a Series.
type Point struct {
	// Start is the step's start.
	Start time.Time
	// Counts are the requests by status class (Classes).
	Counts [4]int64
}

// Total is the requests of p.
func (p Point) Total() int64 { return p.Counts[0] + p.Counts[1] + p.Counts[2] + p.Counts[3] }

// Request is one recent request of a credential: no id, no query value.
type Request struct {
	// Credential is the client_id or API key id.
	Credential string `json:"credential"`
	// Time is when it was recorded.
	Time time.Time `json:"time"`
	// Interaction is the FHIR interaction (read, search-type, …;
	// "other" for a refusal before the interaction was known).
	Interaction string `json:"interaction"`
	// Route is the route shape ("GET /fhir/Observation?…").
	Route string `json:"route"`
	// Status is the HTTP status.
	Status int `json:"status"`
	// Latency is how long the answer took (0 when refused before the
	// FHIR stage).
	Latency time.Duration `json:"-"`
	// LatencyMS is Latency in milliseconds (JSON).
	LatencyMS float64 `json:"latency_ms"`
	// Cause is why it was refused (see Causes), "" for a success.
	Cause string `json:"cause,omitempty"`
}

// ErrorGroup is the errors of one cause.
type ErrorGroup struct {
	// Cause is the refusal's cause (see Causes).
	Cause string `json:"cause"`
	// Count is how many requests it refused.
	Count int64 `json:"count"`
	// LastSeen is the latest of them.
	LastSeen time.Time `json:"last_seen"`
	// Route and Status are the latest one's route shape and status.
	Route  string `json:"route"`
	Status int    `json:"status"`
}

// Totals sums a time range.
type Totals struct {
	// Requests is every request.
	Requests int64 `json:"requests"`
	// ByClass are the requests by status class (Classes).
	ByClass [4]int64 `json:"by_class"`
	// ByStatus are the requests by HTTP status.
	ByStatus map[int]int64 `json:"by_status"`
	// ByInteraction are the requests by FHIR interaction.
	ByInteraction map[string]int64 `json:"by_interaction"`
	// LatencyMeanMS and LatencyMaxMS are over the requests the FHIR stage
	// answered (refusals in front of it count as 0).
	LatencyMeanMS float64 `json:"latency_mean_ms"`
	LatencyMaxMS  float64 `json:"latency_max_ms"`
}

// Series returns the requests of creds from from to to (exclusive) in
// steps of step (a whole number of minutes), by status class; every step
// has a Point, empty ones too.
func (s *Store) Series(ctx context.Context, creds []string, from, to time.Time, step time.Duration) ([]Point, error) {
	in, args, err := credIn(creds)
	if err != nil {
		return nil, err
	}
	if step < time.Minute || step%time.Minute != 0 {
		return nil, fmt.Errorf("%w: step must be a whole number of minutes", ErrBadQuery)
	}
	fromMin, toMin := floorDiv(from.Unix(), 60), floorDiv(to.Unix()+59, 60)
	stepMin := int64(step / time.Minute)
	n := (toMin - fromMin + stepMin - 1) / stepMin
	if n <= 0 || n > MaxPoints {
		return nil, fmt.Errorf("%w: the range must hold between 1 and %d steps", ErrBadQuery, MaxPoints)
	}
	pts := make([]Point, n)
	for i := range pts {
		pts[i].Start = time.Unix((fromMin+int64(i)*stepMin)*60, 0).UTC()
	}
	q := s.rebind(`SELECT (minute - ?) / ?, status, SUM(count) FROM activity_bucket WHERE ` + in + ` AND minute >= ? AND minute < ? GROUP BY 1, 2`)
	all := append([]any{fromMin, stepMin}, args...)
	all = append(all, fromMin, toMin)
	rows, err := s.r.QueryContext(ctx, q, all...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var i, status, c int64
		if err := rows.Scan(&i, &status, &c); err != nil {
			return nil, err
		}
		if i >= 0 && i < n {
			pts[i].Counts[classIndex(int(status))] += c
		}
	}
	return pts, rows.Err()
}

// Recent returns the latest requests of creds, newest first (by time,
// then by arrival), at most
// limit (1 to 1000).
func (s *Store) Recent(ctx context.Context, creds []string, limit int) ([]Request, error) {
	in, args, err := credIn(creds)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be from 1 to 1000", ErrBadQuery)
	}
	q := s.rebind(`SELECT cred, at, interaction, route, status, latency_us, cause FROM activity_recent WHERE ` + in + ` ORDER BY at DESC, id DESC LIMIT ?`)
	return database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (r Request, err error) {
		var at, us int64
		err = rows.Scan(&r.Credential, &at, &r.Interaction, &r.Route, &r.Status, &us, &r.Cause)
		r.Time = time.UnixMilli(at).UTC()
		r.Latency = time.Duration(us) * time.Microsecond
		r.LatencyMS = float64(us) / 1000
		return r, err
	}, q, append(args, limit)...)
}

// Errors returns the errors of creds since since (to the hour: the hour
// holding since counts whole), grouped by cause, most frequent first.
func (s *Store) Errors(ctx context.Context, creds []string, since time.Time) ([]ErrorGroup, error) {
	in, args, err := credIn(creds)
	if err != nil {
		return nil, err
	}
	q := s.rebind(`SELECT cause, count, last_seen, route, status FROM activity_error WHERE ` + in + ` AND hour >= ?`)
	rows, err := s.r.QueryContext(ctx, q, append(args, floorDiv(since.Unix(), 3600))...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	groups := map[string]*ErrorGroup{}
	for rows.Next() {
		var cause, route string
		var count, last int64
		var status int
		if err := rows.Scan(&cause, &count, &last, &route, &status); err != nil {
			return nil, err
		}
		g := groups[cause]
		if g == nil {
			g = &ErrorGroup{Cause: cause}
			groups[cause] = g
		}
		g.Count += count
		if t := time.UnixMilli(last).UTC(); !t.Before(g.LastSeen) {
			g.LastSeen, g.Route, g.Status = t, route, status
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]ErrorGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b ErrorGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Cause, b.Cause))
	})
	return out, nil
}

// Totals sums the requests of creds from from to to (exclusive), to the
// minute.
func (s *Store) Totals(ctx context.Context, creds []string, from, to time.Time) (Totals, error) {
	t := Totals{ByStatus: map[int]int64{}, ByInteraction: map[string]int64{}}
	in, args, err := credIn(creds)
	if err != nil {
		return t, err
	}
	q := s.rebind(`SELECT status, interaction, SUM(count), SUM(latency_sum_us), MAX(latency_max_us) FROM activity_bucket WHERE ` + in + ` AND minute >= ? AND minute < ? GROUP BY status, interaction`)
	rows, err := s.r.QueryContext(ctx, q, append(args, floorDiv(from.Unix(), 60), floorDiv(to.Unix()+59, 60))...)
	if err != nil {
		return t, err
	}
	defer rows.Close()
	var sum, mx int64
	for rows.Next() {
		var status int
		var ix string
		var c, su, m int64
		if err := rows.Scan(&status, &ix, &c, &su, &m); err != nil {
			return t, err
		}
		t.Requests += c
		t.ByClass[classIndex(status)] += c
		t.ByStatus[status] += c
		t.ByInteraction[ix] += c
		sum += su
		mx = max(mx, m)
	}
	if t.Requests > 0 {
		t.LatencyMeanMS = float64(sum) / float64(t.Requests) / 1000
	}
	t.LatencyMaxMS = float64(mx) / 1000
	return t, rows.Err()
}

func (s *Store) rebind(q string) string { return database.Rebind(s.pg, q) }
