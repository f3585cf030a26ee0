package database

import (
	"strconv"
	"strings"
)

// Rebind returns query with its ? placeholders numbered $1, $2, … when
// postgres is true (PostgreSQL's form), and query unchanged otherwise
// (SQLite's). The query must hold no literal '?'.
func Rebind(postgres bool, query string) string {
	if !postgres {
		return query
	}
	var sb strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			sb.WriteString("$" + strconv.Itoa(n))
			continue
		}
		sb.WriteRune(c)
	}
	return sb.String()
}
