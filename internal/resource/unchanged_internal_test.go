package resource

import (
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/store"
)

// unchangedPatient is a stored Patient of a few kilobytes and the same
// content as a client sends it back (another meta.lastUpdated).
func unchangedPatient(tb testing.TB) (*store.Resource, map[string]any) {
	tb.Helper()
	names := strings.Repeat(`{"use":"official","family":"Chalmers","given":["Peter","James"]},`, 20)
	body := `{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2026-01-02T03:04:05.006Z","versionId":"3"},` +
		`"active":true,"birthDate":"1974-12-25","name":[` + strings.TrimSuffix(names, ",") + `]}`
	res, err := decodeStored([]byte(body))
	if err != nil {
		tb.Fatal(err)
	}
	b, err := MarshalResource(res)
	if err != nil {
		tb.Fatal(err)
	}
	cur := &store.Resource{Type: "Patient", ID: "p1", VersionID: 3, LastUpdated: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), Body: b}
	sent, _ := decodeStored(b)
	sent["meta"].(map[string]any)["lastUpdated"] = "2020-01-01T00:00:00Z"
	return cur, sent
}

// TestUnchanged checks the comparison an update or patch makes before
// writing: meta.versionId and meta.lastUpdated aside, any difference is a
// change.
func TestUnchanged(t *testing.T) {
	cur, sent := unchangedPatient(t)
	if !unchanged(cur, "Patient", "p1", sent) {
		t.Error("the same content is a change")
	}
	delete(sent, "meta")
	if !unchanged(cur, "Patient", "p1", sent) {
		t.Error("the same content without meta is a change")
	}
	sent["active"] = false
	if unchanged(cur, "Patient", "p1", sent) {
		t.Error("a changed element is no change")
	}
	sent["active"] = true
	sent["meta"] = map[string]any{"tag": []any{map[string]any{"code": "t"}}}
	if unchanged(cur, "Patient", "p1", sent) {
		t.Error("a new tag is no change")
	}
	if unchanged(&store.Resource{Type: "Patient", ID: "p1", Deleted: true}, "Patient", "p1", sent) {
		t.Error("a deleted resource is unchanged")
	}
}

// BenchmarkUnchanged is the cost the comparison adds to an update of a
// Patient of a few kilobytes that does change.
func BenchmarkUnchanged(b *testing.B) {
	cur, sent := unchangedPatient(b)
	sent["active"] = false
	b.ReportAllocs()
	for b.Loop() {
		if unchanged(cur, "Patient", "p1", sent) {
			b.Fatal("unchanged")
		}
	}
}
