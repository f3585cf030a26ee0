package audit

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"iter"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// sortedIndex orders each table's rows (the order of index rows carries
// no meaning).
func sortedIndex(ix store.Index) store.Index {
	byString := func(s any) {
		v := reflect.ValueOf(s)
		rows := make([]reflect.Value, v.Len())
		for i := range rows {
			rows[i] = reflect.ValueOf(v.Index(i).Interface())
		}
		slices.SortStableFunc(rows, func(a, b reflect.Value) int { return cmp.Compare(fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b)) })
		for i := range rows {
			v.Index(i).Set(rows[i])
		}
	}
	byString(ix.Strings)
	byString(ix.Tokens)
	byString(ix.References)
	byString(ix.Dates)
	byString(ix.Numbers)
	byString(ix.Quantities)
	byString(ix.URIs)
	for _, p := range []any{&ix.Strings, &ix.Tokens, &ix.References, &ix.Dates, &ix.Numbers, &ix.Quantities, &ix.URIs} {
		v := reflect.ValueOf(p).Elem()
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
	return ix
}

var allKinds = []Kind{KindREST, KindLogin, KindLoginFailure, KindLogout, KindConsent, KindTokenIssued, KindTokenRefreshed, KindTokenRevoked,
	KindTokenFailure, KindAuthnFailure, KindAPIKeyCreated, KindAPIKeyUsed, KindAPIKeyRotated, KindAPIKeyRevoked, KindRateLimited,
	KindNetworkRefused, KindAdmin, ""}

// randomEvent is an event with every field drawn from plausible and
// awkward values (empty, invalid UTF-8, accents, upper case, odd
// references).
func randomEvent(r *rand.Rand) Event {
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	text := func() string {
		return pick("", "app", "Client ONE", "  spaced\tout  ", "Ünïcödé Café", "bad\xffutf8", "a<b>&c", "x", "10.0.0.1", "urn:x:y", "Über")
	}
	id := func() string {
		return pick("", "p1", "a-b.c", "123", "bad id", "ÿ", "x/y", "toolong"+fmt.Sprint(r.IntN(1000)))
	}
	typ := func() string {
		return pick("", "Patient", "Observation", "Practitioner", "lowercase", "Obs-X", "Encounter", "AVeryLongTypeNameThatGoesOnAndOnBeyondSixtyFourCharactersForSureXYZ")
	}
	e := Event{Kind: allKinds[r.IntN(len(allKinds))], Action: pick("", "C", "R", "U", "D", "E"),
		Interaction: pick("", "read", "vread", "search-type", "create", "transaction", "batch", "operation"),
		Outcome:     Outcome(pick("", "0", "4", "8", "12")), Description: text(), Status: []int{0, 200, 201, 404, 500}[r.IntN(5)],
		ClientID: text(), Subject: text(), Method: pick("", "bearer", "apikey", "basic", "we ird"), CredentialID: text(),
		Address: pick("", "10.0.0.1", "::1", "[2001:db8::1]:443", "host.example", "bad\xff"), UserAgent: text(),
		Patient: id(), Returned: r.IntN(3), Occurrences: r.IntN(3),
		Time: time.UnixMilli(1700000000000 + r.Int64N(1e12)).UTC()}
	switch r.IntN(4) {
	case 0:
		e.FHIRUser = ""
	case 1:
		e.FHIRUser = "Patient/" + id()
	case 2:
		e.FHIRUser = "Practitioner/" + id()
	default:
		e.FHIRUser = typ() + "/" + id()
	}
	for range r.IntN(4) {
		switch r.IntN(3) {
		case 0:
			e.Entities = append(e.Entities, Entity{Role: "query", Query: "Observation?code=" + text()})
		default:
			e.Entities = append(e.Entities, Entity{Type: typ(), ID: id(), Version: pick("", "1", "7", "bad v"), Role: "domain"})
		}
	}
	return e
}

// The index rows built from the AuditEvent equal the generic extractor's
// on the AuditEvent's JSON, for randomized events.
func TestDirectIndexMatchesExtractor(t *testing.T) {
	_, ex := registry(t)
	direct := 0
	for i, x := range randomAuditEvents(1, 5000) {
		ev, ae := x.ev, x.ae
		got, ok := ae.directIndex()
		if !ok {
			continue
		}
		direct++
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(ae.appendJSON(nil)))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		want, err := ex.Extract(m)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := sortedIndex(got), sortedIndex(want); !reflect.DeepEqual(g, w) {
			t.Fatalf("event %d %+v:\ndirect  %+v\ngeneric %+v", i, ev, g, w)
		}
	}
	t.Logf("%d of 5000 events indexed directly", direct)
	if direct < 2500 {
		t.Errorf("only %d of 5000 events indexed directly", direct)
	}
}

// eventAndAudit is a randomized event and its AuditEvent.
type eventAndAudit struct {
	ev Event
	ae *auditEvent
}

// randomAuditEvents yields n randomized events (seeded) with their
// AuditEvents.
func randomAuditEvents(seed uint64, n int) iter.Seq2[int, eventAndAudit] {
	return func(yield func(int, eventAndAudit) bool) {
		r := rand.New(rand.NewPCG(seed, seed+1))
		for i := range n {
			ev := randomEvent(r)
			ae := newAuditEvent(&ev, fmt.Sprintf("id%d", i), ev.Time, Source{Site: pickSite(r), Instance: "chain-1"})
			if !yield(i, eventAndAudit{ev, ae}) {
				return
			}
		}
	}
}

func pickSite(r *rand.Rand) string {
	return []string{"", base, "http://other.example/fhir", "bad\xffsite"}[r.IntN(4)]
}

// The recorder indexes directly only with an Indexer that agrees: the
// registry's extractor does; one that knows another AuditEvent search
// parameter does not.
func TestDirectIndexProbe(t *testing.T) {
	_, ex := registry(t)
	if !directIndexAgrees(ex, base) {
		t.Fatal("the R4 extractor disagrees with directIndex on the probe events")
	}
	if directIndexAgrees(extraParam{ex}, base) {
		t.Fatal("an Indexer with an extra parameter agrees")
	}
}

// extraParam adds a row of a search parameter R4 does not define.
type extraParam struct{ Indexer }

func (x extraParam) Extract(m map[string]any) (store.Index, error) {
	ix, err := x.Indexer.Extract(m)
	ix.Strings = append(ix.Strings, store.StringRow{Param: "outcome-desc", Norm: "x", Exact: "x"})
	return ix, err
}

// The copy of a record it was not handed (far behind the writer, another
// process's chain) decodes the stored bytes into the record's type when
// they are exactly its rendering, and indexes them as the writer would;
// any other bytes go to the generic extractor.
func TestDecodeOwn(t *testing.T) {
	_, ex := registry(t)
	decoded := 0
	for i, x := range randomAuditEvents(3, 2000) {
		ev, ae := x.ev, x.ae
		row := Row{Chain: "c", Seq: int64(i + 1), ResourceID: ae.ID, Version: 1, Recorded: ev.Time, Body: ae.appendJSON(nil)}
		own := decodeOwn(row.Body)
		if own == nil && !bytes.Contains(row.Body, []byte(`\ufffd`)) {
			// Only a replaced invalid UTF-8 sequence (decoded as the
			// character itself, rendered then as is) makes a difference.
			t.Fatalf("event %d not decoded: %s", i, row.Body)
		}
		if own != nil {
			decoded++
			if !reflect.DeepEqual(own.appendJSON(nil), row.Body) {
				t.Fatalf("event %d: decoded record renders differently", i)
			}
		}
		// Without the handed-over event, the copy's rows are the
		// generic extraction's.
		w, err := prepareWrite(ex, &row, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		g, err := prepareWrite(ex, &row, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := sortedIndex(w.Index), sortedIndex(g.Index); !reflect.DeepEqual(a, b) {
			t.Fatalf("event %d %+v:\ndecoded %+v\ngeneric %+v", i, ev, a, b)
		}
	}
	t.Logf("%d of 2000 records decoded", decoded)
	body := newAuditEvent(&Event{Kind: KindLogin, Time: time.Unix(1700000000, 0)}, "x", time.Unix(1700000000, 0), Source{Site: base}).appendJSON(nil)
	for name, b := range map[string][]byte{
		"unknown element": bytes.Replace(body, []byte(`"resourceType":"AuditEvent",`), []byte(`"resourceType":"AuditEvent","language":"en",`), 1),
		"other spacing":   bytes.Replace(body, []byte(`"resourceType":"AuditEvent",`), []byte(`"resourceType": "AuditEvent",`), 1),
		"trailing value":  append(append([]byte{}, body...), []byte(` {}`)...),
		"not json":        []byte(`{"resourceType":`),
	} {
		if decodeOwn(b) != nil {
			t.Errorf("%s: decoded as the record's own rendering", name)
		}
	}
	if decodeOwn(body) == nil {
		t.Error("a login record's rendering is not decoded")
	}
}
