package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// renderCases are events of every shape Render has: a REST read with a
// user, a query, an anonymous refusal, the security kinds, descriptions,
// occurrences, large counts, unusual statuses, credentials and ids with
// characters that are dropped or escaped.
func renderCases() []Event {
	return []Event{
		readEvent(1),
		{Kind: KindREST, Action: "E", Interaction: "search-type", Status: 200, ClientID: "ak_1", Method: "apikey", CredentialID: "ak_1",
			Address: "2001:db8::1", UserAgent: "x", Returned: 150, Entities: []Entity{{Role: "query", Query: "Observation?code=1&patient=p<1>"}}},
		{Kind: KindREST, Action: "R", Interaction: "read", Outcome: OutcomeMinor, Status: 404, Patient: "p.1", Entities: []Entity{{Type: "Patient", ID: "p.1", Role: "domain"}}},
		{Kind: KindREST, Action: "C", Interaction: "create", Status: 201, ClientID: "c", FHIRUser: "Patient/9", Entities: []Entity{{Type: "Patient", ID: "9", Version: "1", Role: "domain"}}},
		{Kind: KindREST, Action: "U", Interaction: "update", Status: 200, Subject: "s"},
		{Kind: KindREST, Action: "D", Interaction: "delete", Status: 204, FHIRUser: "not a ref"},
		{Kind: KindREST, Status: 500, Outcome: OutcomeSerious, Description: "boom"},
		{Kind: KindLogin, Action: "E", Status: 302, ClientID: "web", Subject: "alice", Method: "password", CredentialID: "sess/1 2", Address: "host.example"},
		{Kind: KindLoginFailure, Outcome: OutcomeMinor, Description: "bad password", Address: "192.0.2.1"},
		{Kind: KindLogout}, {Kind: KindTokenIssued, ClientID: "é\u2028<&>"}, {Kind: KindAPIKeyUsed, CredentialID: "ak_2"},
		{Kind: KindConsent, Occurrences: 3}, {Kind: KindRateLimited, Status: 429, Occurrences: 12, Description: "rate limit exceeded (client)"},
		{Kind: KindNetworkRefused, Status: 403, Occurrences: 1}, {Kind: KindAdmin, Description: "client created"}, {Kind: "other"},
		{Kind: KindREST, Action: "R", Interaction: "vread", Status: 99}, {Kind: KindREST, Status: 600}, {Kind: KindREST, Status: 1000, Description: "x"},
	}
}

// renderGolden are the SHA-256 of renderCases' records as the writer
// rendered them before its allocations were cut: the stored bytes (and
// so the chain's hashes) must not change.
var renderGolden = []string{
	"f7f757cbb7f72dc36f8c2c7dcf5dc51d0f7200f5c7d714ee04af410399af972d",
	"897cbf4b584dc33e3b2471369060a5c621b9a0fd3eef53f02385871863f5138b",
	"a723f853d4f4f90fdf7a12c3768e45c66a275bca78bf1957462fa9a532b201ef",
	"4e026d357d5e94af2694c2d71812de4ff2d132a9f24627300f3d510506e69045",
	"23c37499625e8deed6f9eba95b48cd528d9affa86897d6e4e6b697ec243c6323",
	"985b32d0d953a3d3e0d33d7a92bac9f2a16ccd72b644d74c86143dca672fd460",
	"f6e0cc5802a03cd4820700d960a430b4f7db3d1c3ff6b7ea6010539cd20e98ef",
	"6967bbe490d0514056066e66ef3cc5b85dd29f8a532cd4fe6e0e8154caef38f1",
	"6b63fa15f352fc02506303c66f3cddf6986cc3d13b107bb46fdcd35ea7ffca2a",
	"55125ac279cf3a7f01314f4ff6a88ecd201846e2ba53c1a50f5387ab85fd423e",
	"8001dbbca6ae385eb26c44233e6c1f04f3381dbe871ae21330840f5e7b4d4df4",
	"c662412889374fee47d012dedb7289d6a4bc698d2458b0f6b6fb016d86081afd",
	"76855fac5aff41e12e02597e8ea5cb4e20059110150b39d2894f269bc768dc81",
	"7133b8feb2e0794c0836e033c44a090ef7560e73bdc13f73ea2a910313681cbb",
	"4cea805062d7969a8e0e03bacc33fef88150b7194662587f9ff58228793d3ba4",
	"ee766bb0dee4f12955d6e58366ef08990e31de84cfa11ca4957556dcd6e45f72",
	"6d46f5fb2fde791b992cd7e47c09f791683df8137483f8c1ab8c91b9dba8ee6f",
	"3f7605896180afb0193c34dab4ae9013ba4dce318c4410e8f411c0a83522d016",
	"c7b396c93cbac97543e6b1f8b2fe864bd47eb7d7719129eb675f2016046494bd",
	"57bcb659ed2bd6f6285f723e78df70a2c5ccff2bee6c2c843e60ee4282748ec5",
}

func TestRenderGolden(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 123456789, time.UTC)
	src := Source{Site: "https://h.example/fhir", Instance: "0191a3b0-0000-7000-8000-000000000001"}
	for i, e := range renderCases() {
		sum := sha256.Sum256(Render(&e, "0191a3b0-0000-7000-8000-00000000000a", at, src))
		got := hex.EncodeToString(sum[:])
		if i >= len(renderGolden) {
			t.Errorf("case %d: %q, (no golden)", i, got)
			continue
		}
		if got != renderGolden[i] {
			t.Errorf("case %d: record bytes changed: %s\n%s", i, got, Render(&e, "0191a3b0-0000-7000-8000-00000000000a", at, src))
		}
	}
}
