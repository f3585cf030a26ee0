package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestAppendJSONMatchesMarshal holds the hand-written encoder to
// json.Marshal of the same AuditEvent, byte for byte: the chain hashes
// the stored bytes, and verify and the index recompute from them.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	events, pick := randomEvents()
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	for i, e := range events {
		src := Source{Site: pick(), Instance: pick()}
		id := pick()
		want, err := json.Marshal(newAuditEvent(&e, id, at, src))
		if err != nil {
			t.Fatal(err)
		}
		if got := Render(&e, id, at, src); !bytes.Equal(got, want) {
			t.Fatalf("event %d (%+v):\n got %s\nwant %s", i, e, got, want)
		}
	}
	// Shapes Render does not make: nil and empty lists, absent parts.
	for _, ae := range []*auditEvent{{}, {Agent: []agent{{Type: &codeable{}}, {Who: &reference{}}, {Policy: []string{}}}},
		{Source: source{Type: []coding{}}, Subtype: []coding{}, Entity: []entity{{}, {Detail: []detail{}}, {Description: "d"}}}} {
		want, _ := json.Marshal(ae)
		if got := ae.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	}
}

// randomEvents returns the events the encoder tests run over (fixed
// ones, then 2,000 random ones with odd strings) and the odd-string
// picker, from a fixed seed.
func randomEvents() ([]Event, func() string) {
	odd := []string{"", "plain", `quo"te\back`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
		"é ü 漢字 🙂", "line\u2028sep\u2029", "bad\xffutf8\xc3", "\xe2\x80", "10.0.0.1", "::1", "host.example"}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	pick := func() string {
		if rng.IntN(3) == 0 {
			return random()
		}
		return odd[rng.IntN(len(odd))]
	}
	kinds := []Kind{"", KindREST, KindLogin, KindLoginFailure, KindLogout, KindConsent, KindTokenIssued, KindTokenRefreshed,
		KindTokenRevoked, KindTokenFailure, KindAuthnFailure, KindAPIKeyCreated, KindAPIKeyUsed, KindAPIKeyRotated,
		KindAPIKeyRevoked, KindRateLimited, KindNetworkRefused, KindAdmin, "other"}
	events := []Event{readEvent(1), {}, {Kind: KindREST, Action: "E", Interaction: "search-type", Returned: 20,
		Entities: []Entity{{Role: "query", Query: "Observation?code=<x>&patient=1"}}}}
	for i := range 2000 {
		e := Event{Kind: kinds[rng.IntN(len(kinds))], Action: []string{"", "C", "R", "U", "D", "E"}[rng.IntN(6)],
			Interaction: pick(), Outcome: Outcome(pick()), Description: pick(), Status: rng.IntN(600),
			ClientID: pick(), Subject: pick(), FHIRUser: []string{"", "Patient/p1", "Practitioner/x.y-z", "bad ref", pick()}[rng.IntN(5)],
			Method: pick(), CredentialID: pick(), Address: pick(), UserAgent: pick(),
			Patient: []string{"", "p1", "bad id!", pick()}[rng.IntN(4)], Returned: rng.IntN(3) * i, Occurrences: rng.IntN(4)}
		for range rng.IntN(4) {
			e.Entities = append(e.Entities, Entity{Type: []string{"", "Observation", pick()}[rng.IntN(3)],
				ID: []string{"", "o1", pick()}[rng.IntN(3)], Version: []string{"", "2", pick()}[rng.IntN(3)],
				Role: []string{"domain", "query", pick()}[rng.IntN(3)], Query: pick()})
		}
		events = append(events, e)
	}
	return events, pick
}

// TestToMapMatchesDecode holds the generic value the copy indexes to the
// decoding of the stored bytes (json.Decoder with UseNumber, as the copy
// of a record written by another process decodes it), over the encoder
// tests' events: the index of a record is the same whichever way the
// copy gets it.
func TestToMapMatchesDecode(t *testing.T) {
	events, pick := randomEvents()
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	check := func(i int, ae *auditEvent) {
		t.Helper()
		body := ae.appendJSON(nil)
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var want map[string]any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got := ae.toMap(); !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d:\n got %#v\nwant %#v", i, got, want)
		}
	}
	for i, e := range events {
		check(i, newAuditEvent(&e, pick(), at, Source{Site: pick(), Instance: pick()}))
	}
	for i, ae := range []*auditEvent{{}, {Agent: []agent{{Type: &codeable{}}, {Who: &reference{}}, {Policy: []string{}}}},
		{Source: source{Type: []coding{}}, Subtype: []coding{}, Entity: []entity{{}, {Detail: []detail{}}, {Description: "d"}}}} {
		check(-i, ae)
	}
}

// TestRecordIDsOrdered: consecutive records' ids sort in the order they
// were made (index locality in every table keyed by id) and are distinct.
func TestRecordIDsOrdered(t *testing.T) {
	prev := recordID()
	for range 10000 {
		id := recordID()
		if id <= prev {
			t.Fatalf("id %s after %s", id, prev)
		}
		prev = id
	}
}
