package sqlite

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
	"testing"

	"github.com/lapis-health/lapis/internal/store"
)

func TestExplainTmp(t *testing.T) {
	path := os.Getenv("EXPLAIN_DB")
	if path == "" {
		t.Skip()
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sys := "http://loinc.org"
	q := &store.Query{Type: "Observation", Count: 50, Where: []store.Clause{
		{Any: []store.Predicate{{Param: "patient", Reference: &store.ReferenceMatch{TargetType: "Patient", TargetID: "p7"}}}},
		{Any: []store.Predicate{{Param: "code", Token: &store.TokenMatch{System: &sys, Code: "c3"}}}},
	}}
	sql, args, _ := s.eng.SQL(q)
	if os.Getenv("PLUS") != "" {
		sql = strings.Replace(sql, "r.type =", "+r.type =", 1)
	}
	if os.Getenv("SWAP") != "" {
		q.Where[0], q.Where[1] = q.Where[1], q.Where[0]
		sql, args, _ = s.eng.SQL(q)
		sql = strings.Replace(sql, "r.type =", "+r.type =", 1)
	}
	t0 := time.Now()
	for i := 0; i < 100; i++ {
		rows, _ := s.r.Query(sql, args...)
		for rows.Next() {
		}
		rows.Close()
	}
	fmt.Println("per query", time.Since(t0)/100)
	fmt.Println(sql, args)
	rows, err := s.r.Query("EXPLAIN QUERY PLAN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, b, c int
		var d string
		rows.Scan(&a, &b, &c, &d)
		fmt.Println(a, b, d)
	}
}
