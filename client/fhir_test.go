package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func newTestClient(t *testing.T, base string, opts ...Option) *Client {
	t.Helper()
	c, err := New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "fhir.example.org/fhir", "ftp://x/fhir", "https://x/fhir?a=b", "https://user:pw@x/fhir", "https:///fhir"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("error leaks user info: %v", err)
		}
	}
	c := newTestClient(t, "https://fhir.example.org/fhir/")
	if c.BaseURL() != "https://fhir.example.org/fhir" {
		t.Errorf("BaseURL = %q", c.BaseURL())
	}
}

func TestEmptyCredentialsRefused(t *testing.T) {
	for _, a := range []Auth{APIKey(""), APIKeyHeader("X-API-Key", ""), Basic("u", ""), Basic("", "p"), BearerToken("")} {
		if _, err := New("https://x/fhir", WithAuth(a)); err == nil {
			t.Errorf("New accepted %v", a)
		}
	}
	req, _ := http.NewRequest("GET", "https://x/", nil)
	Basic("Aladdin", "open sesame").Apply(context.Background(), req)
	if req.Header.Get("Authorization") != "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==" { // RFC 7617 example
		t.Fatalf("Basic header = %q", req.Header.Get("Authorization"))
	}
}

func TestCRUDAndHistory(t *testing.T) {
	f := newFakeFHIR()
	_, base := f.start(t)
	c := newTestClient(t, base)
	ctx := context.Background()

	created, err := c.Create(ctx, json.RawMessage(`{"resourceType":"Patient","name":[{"family":"Chalmers"}],"birthDate":"1974-12-25","extension":[{"url":"x","valueDecimal":37.50}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if created.Type != "Patient" || created.ID == "" || created.VersionID != "1" || created.LastUpdated.IsZero() {
		t.Fatalf("created = %+v", created)
	}
	var p struct {
		Extension []struct{ ValueDecimal json.Number } `json:"extension"`
	}
	if err := created.Decode(&p); err != nil || p.Extension[0].ValueDecimal.String() != "37.50" {
		t.Fatalf("Decode: %v %+v", err, p)
	}

	got, err := c.Read(ctx, "Patient", created.ID)
	if err != nil || got.ID != created.ID || got.VersionID != "1" {
		t.Fatalf("Read: %v %+v", err, got)
	}

	upd, err := c.Update(ctx, "Patient", created.ID, json.RawMessage(`{"resourceType":"Patient","id":"`+created.ID+`","active":true}`), IfMatch("1"))
	if err != nil || upd.VersionID != "2" {
		t.Fatalf("Update: %v %+v", err, upd)
	}
	// A stale If-Match is a 412.
	_, err = c.Update(ctx, "Patient", created.ID, json.RawMessage(`{"resourceType":"Patient","id":"`+created.ID+`"}`), IfMatch(`W/"1"`))
	if !IsPreconditionFailed(err) {
		t.Fatalf("stale update: %v", err)
	}
	// Body and URL disagree: refused before sending.
	if _, err := c.Update(ctx, "Patient", created.ID, json.RawMessage(`{"resourceType":"Observation"}`)); err == nil {
		t.Fatal("mismatched update accepted")
	}

	patched, err := c.Patch(ctx, "Patient", created.ID, json.RawMessage(`[{"op":"replace","path":"/active","value":false}]`), IfMatch("2"))
	if err != nil || patched.VersionID != "3" || !strings.Contains(string(patched.Raw), `"active":false`) {
		t.Fatalf("Patch: %v %+v", err, patched)
	}
	if _, err := c.Patch(ctx, "Patient", created.ID, json.RawMessage(`{"op":"replace"}`)); err == nil {
		t.Fatal("non-array patch accepted")
	}

	v1, err := c.VRead(ctx, "Patient", created.ID, "1")
	if err != nil || v1.VersionID != "1" || !strings.Contains(string(v1.Raw), "Chalmers") {
		t.Fatalf("VRead: %v %+v", err, v1)
	}

	minimal, err := c.Create(ctx, &Resource{Raw: json.RawMessage(`{"resourceType":"Observation","status":"final"}`)}, ReturnMinimal())
	if err != nil || minimal.Type != "Observation" || minimal.ID == "" || minimal.VersionID != "1" || len(minimal.Raw) != 0 || minimal.LastUpdated.IsZero() {
		t.Fatalf("Create minimal: %v %+v", err, minimal)
	}
	// Conditional create finds the existing resource.
	again, err := c.Create(ctx, map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": "Chalmers"}}}, IfNoneExist("active=false"))
	if err != nil || again.ID != created.ID {
		t.Fatalf("conditional create: %v %+v", err, again)
	}

	if err := c.Delete(ctx, "Patient", created.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(ctx, "Patient", created.ID)
	if !IsGone(err) || IsNotFound(err) {
		t.Fatalf("read after delete: %v", err)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Outcome == nil || fe.Outcome.Issues[0].Code != "deleted" {
		t.Fatalf("error outcome: %#v", err)
	}

	h, err := c.History(ctx, "Patient", created.ID, url.Values{"_count": {"10"}})
	if err != nil || h.Type != "history" || len(h.Entries) != 4 || *h.Total != 4 || h.Entries[0].Resource != nil {
		t.Fatalf("History: %v %+v", err, h)
	}

	if _, err := c.Read(ctx, "Patient", "nope"); !IsNotFound(err) {
		t.Fatalf("unknown id: %v", err)
	} else if !strings.Contains(err.Error(), "Patient/nope is not known") || !strings.Contains(err.Error(), "404") {
		t.Errorf("error text lacks the outcome: %v", err)
	}
	cap, err := c.Capabilities(ctx)
	if err != nil || cap.Type != "CapabilityStatement" {
		t.Fatalf("Capabilities: %v %+v", err, cap)
	}
}

func TestInvalidInputsRejectedBeforeSending(t *testing.T) {
	f := newFakeFHIR()
	_, base := f.start(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	cases := map[string]func() error{
		"id with slash":   func() error { _, err := c.Read(ctx, "Patient", "../Observation/1"); return err },
		"id with query":   func() error { _, err := c.Read(ctx, "Patient", "1?_format=xml"); return err },
		"lowercase type":  func() error { _, err := c.Read(ctx, "patient", "1"); return err },
		"empty version":   func() error { _, err := c.VRead(ctx, "Patient", "1", ""); return err },
		"delete bad id":   func() error { return c.Delete(ctx, "Patient", "") },
		"create not json": func() error { _, err := c.Create(ctx, "not json"); return err },
		"create no type":  func() error { _, err := c.Create(ctx, json.RawMessage(`{"id":"x"}`)); return err },
		"create nil":      func() error { _, err := c.Create(ctx, nil); return err },
		"search bad type": func() error { _, err := c.SearchPage(ctx, "Patient/1", nil); return err },
		"tx wrong type": func() error {
			_, err := c.Transaction(ctx, json.RawMessage(`{"resourceType":"Bundle","type":"batch"}`))
			return err
		},
		"tx not bundle":    func() error { _, err := c.Transaction(ctx, json.RawMessage(`{"resourceType":"Patient"}`)); return err },
		"do other origin":  func() error { _, err := c.Do(ctx, "GET", "https://evil.example/steal", nil, nil); return err },
		"export bad level": func() error { _, err := c.Export(ctx, ExportRequest{Level: "everything"}); return err },
	}
	for name, fn := range cases {
		if err := fn(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(f.requests); n != 0 {
		t.Errorf("%d requests sent for invalid input: %v", n, f.requests)
	}
}

func TestSearchFollowsNextLinks(t *testing.T) {
	f := newFakeFHIR()
	_, base := f.start(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		if _, err := c.Create(ctx, json.RawMessage(`{"resourceType":"Patient","name":[{"family":"Smith"}]}`)); err != nil {
			t.Fatal(err)
		}
	}
	c.Create(ctx, json.RawMessage(`{"resourceType":"Patient","name":[{"family":"Jones"}]}`))
	f.requests = nil

	it := c.Search(ctx, "Patient", url.Values{"name": {"smith"}, "_count": {"3"}, "_include": {"Patient:organization"}})
	var ids []string
	for it.Next(ctx) {
		if it.Resource().Type != "Patient" {
			t.Fatalf("included resource yielded: %+v", it.Resource())
		}
		ids = append(ids, it.Resource().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 7 || it.Pages() != 3 || len(f.requests) != 3 {
		t.Fatalf("ids %v, pages %d, requests %v", ids, it.Pages(), f.requests)
	}
	if *it.Page().Total != 7 {
		t.Errorf("total = %d", *it.Page().Total)
	}

	// SearchAll, stopping early: no further page is fetched.
	f.requests = nil
	n := 0
	for r, err := range c.SearchAll(ctx, "Patient", url.Values{"_count": {"2"}}) {
		if err != nil {
			t.Fatal(err)
		}
		_ = r
		if n++; n == 3 {
			break
		}
	}
	if len(f.requests) != 2 {
		t.Errorf("early break fetched %d pages", len(f.requests))
	}

	// First page alone, then NextPage.
	page, err := c.SearchPage(ctx, "Patient", url.Values{"_count": {"5"}})
	if err != nil || len(page.Resources()) != 5 || page.Links["next"] == "" {
		t.Fatalf("SearchPage: %v %+v", err, page)
	}
	page2, err := c.NextPage(ctx, page)
	if err != nil || len(page2.Resources()) != 3 {
		t.Fatalf("NextPage: %v", err)
	}
	if last, err := c.NextPage(ctx, page2); last != nil || err != nil {
		t.Fatalf("NextPage after last: %v %v", last, err)
	}
}

func TestSearchRefusesNextLinkToOtherOrigin(t *testing.T) {
	var evilHits int
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { evilHits++ }))
	defer evil.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeBundle(w, map[string]any{"resourceType": "Bundle", "type": "searchset",
			"link":  []any{map[string]any{"relation": "next", "url": evil.URL + "/fhir/Patient?page=2"}},
			"entry": []any{map[string]any{"resource": map[string]any{"resourceType": "Patient", "id": "a"}}}})
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/fhir", WithAuth(APIKey("k-secret")))
	var got int
	var lastErr error
	for _, err := range c.SearchAll(context.Background(), "Patient", nil) {
		if err != nil {
			lastErr = err
			break
		}
		got++
	}
	if got != 1 || lastErr == nil || evilHits != 0 {
		t.Fatalf("got %d, err %v, evil hits %d", got, lastErr, evilHits)
	}
}

func TestTransactionAndBatch(t *testing.T) {
	f := newFakeFHIR()
	_, base := f.start(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	b := &Bundle{Entries: []BundleEntry{
		{FullURL: "urn:uuid:1", Resource: &Resource{Raw: json.RawMessage(`{"resourceType":"Patient"}`)}, Request: &EntryRequest{Method: "POST", URL: "Patient"}},
		{FullURL: "urn:uuid:2", Resource: &Resource{Raw: json.RawMessage(`{"resourceType":"Observation","status":"final"}`)}, Request: &EntryRequest{Method: "POST", URL: "Observation"}},
	}}
	resp, err := c.Transaction(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Type != "transaction-response" || len(resp.Entries) != 2 || resp.Entries[0].Response.StatusCode() != 201 ||
		!strings.HasPrefix(resp.Entries[1].Response.Location, "Observation/") || resp.Entries[0].Response.LastModified.IsZero() {
		t.Fatalf("transaction response: %+v", resp)
	}
	// A failing transaction carries the OperationOutcome.
	_, err = c.Transaction(ctx, json.RawMessage(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`))
	var fe *Error
	if !errors.As(err, &fe) || fe.StatusCode != 400 || fe.Outcome.Issues[0].Diagnostics != "only POST entries" {
		t.Fatalf("failing transaction: %v", err)
	}
	// Batch: per-entry outcomes.
	br, err := c.Batch(ctx, `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"request":{"method":"DELETE","url":"Patient/1"}}]}`)
	if err != nil || br.Entries[0].Response.StatusCode() != 201 || br.Entries[1].Response.StatusCode() != 400 || br.Entries[1].Response.Outcome == nil {
		t.Fatalf("batch: %v %+v", err, br)
	}
}

func TestParseResourceFromHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Location", "https://x/fhir/Patient/abc/_history/7")
	h.Set("ETag", `W/"7"`)
	r := resourceFromHeaders(h)
	if r.Type != "Patient" || r.ID != "abc" || r.VersionID != "7" {
		t.Fatalf("%+v", r)
	}
	h.Set("Location", "https://x/fhir/Observation/o1")
	h.Del("ETag")
	if r := resourceFromHeaders(h); r.Type != "Observation" || r.ID != "o1" || r.VersionID != "" {
		t.Fatalf("%+v", r)
	}
	if _, err := ParseBundle([]byte(`{"resourceType":"Patient"}`)); err == nil {
		t.Fatal("non-Bundle parsed as Bundle")
	}
	if _, err := ParseBundle([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}`)); err == nil {
		t.Fatal("entry without resourceType accepted")
	}
}
