package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// validType and validID bound what the client puts into a URL path, so a
// caller-supplied id can never change the request's path or query.
var (
	validType = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
	validID   = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)
)

func checkType(typ string) error {
	if !validType.MatchString(typ) {
		return fmt.Errorf("fhir client: invalid resource type %q", truncate(typ, 64))
	}
	return nil
}

func checkID(what, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("fhir client: invalid %s %q", what, truncate(id, 80))
	}
	return nil
}

// WriteOption modifies a create, update or patch request.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifNoneExist string
	ifMatch     string
	minimal     bool
}

// IfNoneExist makes a create conditional (If-None-Exist): when a resource
// already matches query (e.g. "identifier=http://hospital.example|123"),
// the server creates nothing and returns the existing one.
func IfNoneExist(query string) WriteOption {
	return func(o *writeOptions) { o.ifNoneExist = query }
}

// IfMatch makes an update or patch apply only if the resource's current
// version is version ("3" or W/"3"); otherwise the server answers 412,
// see IsPreconditionFailed.
func IfMatch(version string) WriteOption {
	return func(o *writeOptions) {
		v := strings.TrimSpace(version)
		if !strings.HasPrefix(v, "W/") {
			v = `W/"` + strings.Trim(v, `"`) + `"`
		}
		o.ifMatch = v
	}
}

// ReturnMinimal asks the server not to send the resource back (Prefer:
// return=minimal); the returned Resource then has Type, ID, VersionID and
// LastUpdated from the response headers and no Raw.
func ReturnMinimal() WriteOption { return func(o *writeOptions) { o.minimal = true } }

func (o *writeOptions) header() http.Header {
	h := http.Header{}
	if o.minimal {
		h.Set("Prefer", "return=minimal")
	} else {
		h.Set("Prefer", "return=representation")
	}
	if o.ifNoneExist != "" {
		h.Set("If-None-Exist", o.ifNoneExist)
	}
	if o.ifMatch != "" {
		h.Set("If-Match", o.ifMatch)
	}
	return h
}

func collect(opts []WriteOption) *writeOptions {
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	return &o
}

// resource is call for an answer that is one resource.
func (c *Client) resource(ctx context.Context, method string, u *url.URL, body []byte, hdr http.Header) (*Resource, error) {
	b, h, err := c.call(ctx, method, u, body, hdr)
	if err != nil {
		return nil, err
	}
	return resourceFromResponse(b, h)
}

// call sends a request and decodes a 2xx JSON body into raw bytes; an
// error status becomes an *Error.
func (c *Client) call(ctx context.Context, method string, u *url.URL, body []byte, hdr http.Header) ([]byte, http.Header, error) {
	r := &request{method: method, url: u, body: body, hdr: hdr, auth: true}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, nil, c.errorFrom(r, resp)
	}
	b, err := readBody(resp)
	if err != nil {
		return nil, nil, err
	}
	return b, resp.Header, nil
}

// path builds a URL from already-validated path segments and a query.
func (c *Client) path(q url.Values, segs ...string) *url.URL {
	u := *c.base
	p := strings.TrimRight(c.base.Path, "/")
	for _, s := range segs {
		if s != "" {
			p += "/" + s
		}
	}
	u.Path, u.RawPath = p, ""
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return &u
}

// Read returns the current version of the resource typ/id. A deleted
// resource gives an error for which IsGone is true, an unknown one
// IsNotFound.
func (c *Client) Read(ctx context.Context, typ, id string) (*Resource, error) {
	if err := errors.Join(checkType(typ), checkID("id", id)); err != nil {
		return nil, err
	}
	return c.resource(ctx, http.MethodGet, c.path(nil, typ, id), nil, nil)
}

// VRead returns version vid of the resource typ/id.
func (c *Client) VRead(ctx context.Context, typ, id, vid string) (*Resource, error) {
	if err := errors.Join(checkType(typ), checkID("id", id), checkID("version", vid)); err != nil {
		return nil, err
	}
	return c.resource(ctx, http.MethodGet, c.path(nil, typ, id, "_history", vid), nil, nil)
}

// encodeResource accepts the body forms Create, Update and Transaction
// take: *Resource, Resource, json.RawMessage, []byte, string, or any value
// encoding/json can marshal.
func encodeResource(v any) ([]byte, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil, errors.New("fhir client: nil resource")
	case *Resource:
		if x == nil {
			return nil, errors.New("fhir client: nil resource")
		}
		b = x.Raw
	case Resource:
		b = x.Raw
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("fhir client: encoding resource: %w", err)
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("fhir client: empty resource")
	}
	return b, nil
}

// Create creates a resource with a server-assigned id (POST [base]/Type)
// and returns it as stored (with id and meta). resource is a *Resource,
// json.RawMessage, []byte, string of JSON, or any value that marshals to
// a FHIR resource; its resourceType picks the endpoint. Options:
// IfNoneExist, ReturnMinimal.
func (c *Client) Create(ctx context.Context, resource any, opts ...WriteOption) (*Resource, error) {
	body, err := encodeResource(resource)
	if err != nil {
		return nil, err
	}
	r, err := ParseResource(body)
	if err != nil {
		return nil, err
	}
	if err := checkType(r.Type); err != nil {
		return nil, err
	}
	o := collect(opts)
	return c.resource(ctx, http.MethodPost, c.path(nil, r.Type), body, o.header())
}

// Update replaces (or creates, if the server allows client-assigned ids)
// the resource typ/id with body (PUT [base]/Type/id). The body's
// resourceType and id must match typ and id. Options: IfMatch,
// ReturnMinimal.
func (c *Client) Update(ctx context.Context, typ, id string, body json.RawMessage, opts ...WriteOption) (*Resource, error) {
	if err := errors.Join(checkType(typ), checkID("id", id)); err != nil {
		return nil, err
	}
	r, err := ParseResource(body)
	if err != nil {
		return nil, err
	}
	if r.Type != typ || (r.ID != "" && r.ID != id) {
		return nil, fmt.Errorf("fhir client: body is %s/%s, not %s/%s", truncate(r.Type, 64), truncate(r.ID, 64), typ, id)
	}
	o := collect(opts)
	return c.resource(ctx, http.MethodPut, c.path(nil, typ, id), body, o.header())
}

// Patch applies a JSON Patch (RFC 6902) document to the resource typ/id.
// Options: IfMatch, ReturnMinimal.
func (c *Client) Patch(ctx context.Context, typ, id string, jsonPatch json.RawMessage, opts ...WriteOption) (*Resource, error) {
	if err := errors.Join(checkType(typ), checkID("id", id)); err != nil {
		return nil, err
	}
	var ops []json.RawMessage
	if err := json.Unmarshal(jsonPatch, &ops); err != nil {
		return nil, errors.New("fhir client: a JSON Patch must be a JSON array of operations")
	}
	o := collect(opts)
	h := o.header()
	h.Set("Content-Type", "application/json-patch+json")
	return c.resource(ctx, http.MethodPatch, c.path(nil, typ, id), jsonPatch, h)
}

// Delete deletes the resource typ/id. Deleting an already deleted resource
// succeeds or gives an error for which IsGone is true, depending on the
// server.
func (c *Client) Delete(ctx context.Context, typ, id string) error {
	if err := errors.Join(checkType(typ), checkID("id", id)); err != nil {
		return err
	}
	_, _, err := c.call(ctx, http.MethodDelete, c.path(nil, typ, id), nil, nil)
	return err
}

// History returns the first page of a history: of the resource typ/id,
// of every resource of type typ (id ""), or of the whole server (typ and
// id ""). q holds _count, _since, _at. Follow the "next" link with
// NextPage.
func (c *Client) History(ctx context.Context, typ, id string, q url.Values) (*Bundle, error) {
	var segs []string
	switch {
	case typ == "" && id == "":
	case typ != "" && id == "":
		if err := checkType(typ); err != nil {
			return nil, err
		}
		segs = []string{typ}
	default:
		if err := errors.Join(checkType(typ), checkID("id", id)); err != nil {
			return nil, err
		}
		segs = []string{typ, id}
	}
	segs = append(segs, "_history")
	return c.getBundle(ctx, c.path(q, segs...))
}

// NextPage fetches the page that b's "next" link points to; it returns
// nil, nil when b is the last page. The link must be on the server's
// origin.
func (c *Client) NextPage(ctx context.Context, b *Bundle) (*Bundle, error) {
	next := b.Links["next"]
	if next == "" {
		return nil, nil
	}
	u, err := c.resolve(next)
	if err != nil {
		return nil, err
	}
	return c.getBundle(ctx, u)
}

func (c *Client) getBundle(ctx context.Context, u *url.URL) (*Bundle, error) {
	b, _, err := c.call(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return nil, err
	}
	return ParseBundle(b)
}

// Transaction posts a transaction Bundle to the base URL: all entries
// succeed together or none does. bundle is a *Bundle (whose Type is set to
// "transaction"), json.RawMessage, []byte or string of a Bundle whose type
// is "transaction". The answer is the transaction-response Bundle; a
// failed transaction is an *Error with the server's OperationOutcome.
func (c *Client) Transaction(ctx context.Context, bundle any) (*Bundle, error) {
	return c.postBundle(ctx, bundle, "transaction")
}

// Batch posts a batch Bundle: entries are processed independently, and the
// batch-response Bundle reports each entry's status (see
// EntryResponse.StatusCode and Outcome). bundle takes the forms
// Transaction accepts, with type "batch".
func (c *Client) Batch(ctx context.Context, bundle any) (*Bundle, error) {
	return c.postBundle(ctx, bundle, "batch")
}

func (c *Client) postBundle(ctx context.Context, bundle any, typ string) (*Bundle, error) {
	var body []byte
	switch b := bundle.(type) {
	case *Bundle:
		if b == nil {
			return nil, errors.New("fhir client: nil Bundle")
		}
		cp := *b
		cp.Type = typ
		var err error
		if body, err = json.Marshal(&cp); err != nil {
			return nil, fmt.Errorf("fhir client: encoding Bundle: %w", err)
		}
	default:
		var err error
		if body, err = encodeResource(bundle); err != nil {
			return nil, err
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			Type         string `json:"type"`
		}
		if json.Unmarshal(body, &head) != nil || head.ResourceType != "Bundle" {
			return nil, errors.New("fhir client: body is not a Bundle")
		}
		if head.Type != typ {
			return nil, fmt.Errorf("fhir client: Bundle type is %q, want %q", truncate(head.Type, 32), typ)
		}
	}
	b, _, err := c.call(ctx, http.MethodPost, c.path(nil), body, nil)
	if err != nil {
		return nil, err
	}
	return ParseBundle(b)
}

// Capabilities returns the server's CapabilityStatement ([base]/metadata).
func (c *Client) Capabilities(ctx context.Context) (*Resource, error) {
	return c.resource(ctx, http.MethodGet, c.path(nil, "metadata"), nil, nil)
}
