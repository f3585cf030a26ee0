// Package httpx holds the facts of one HTTP request that several stages
// share and no single stage owns: the request id and what the request log
// learns from inner stages (the matched route, the calling client). It
// imports nothing of Lapis.
package httpx

import (
	"context"
	"sync/atomic"
)

// Info is what the request log learns about a request from the stages
// inside it: the matched route (set by the router once it has matched)
// and the calling client (set after authentication).
type Info struct {
	id       string
	clientID atomic.Pointer[string]
	route    atomic.Pointer[Route]
}

// Route names the route a request matched, for logs and metric labels:
// Class is a fixed word ("fhir.read", "auth.token", "healthz"), Pattern
// the ServeMux pattern's path ("/fhir/{type}/{id}"); neither carries an
// id or the query string.
type Route struct {
	Class, Pattern string
}

type infoKey struct{}

// NewContext returns ctx carrying a new Info for the request id.
func NewContext(ctx context.Context, id string) (context.Context, *Info) {
	ri := &Info{id: id}
	return context.WithValue(ctx, infoKey{}, ri), ri
}

func infoFrom(ctx context.Context) *Info {
	ri, _ := ctx.Value(infoKey{}).(*Info)
	return ri
}

// RequestID returns the id of the request ctx belongs to ("" outside the
// server).
func RequestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// SetClientID tells the request log which client (OAuth client id or API
// key id) made the request; stages after authentication call it.
func SetClientID(ctx context.Context, clientID string) {
	if ri := infoFrom(ctx); ri != nil {
		ri.clientID.Store(&clientID)
	}
}

// SetRoute tells the request log which route the request matched; the
// router calls it, the innermost router last.
func SetRoute(ctx context.Context, class, pattern string) {
	if ri := infoFrom(ctx); ri != nil {
		ri.route.Store(&Route{Class: class, Pattern: pattern})
	}
}

// ClientID is the client SetClientID named, "" if none.
func (ri *Info) ClientID() string {
	if p := ri.clientID.Load(); p != nil {
		return *p
	}
	return ""
}

// Route is the route SetRoute named; ok is false when none did.
func (ri *Info) Route() (r Route, ok bool) {
	if p := ri.route.Load(); p != nil {
		return *p, true
	}
	return Route{}, false
}

// PatternPath is the path of a ServeMux pattern: the pattern without its
// method ("GET /fhir/{type}" → "/fhir/{type}").
func PatternPath(pattern string) string {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '/' {
			return pattern[i:]
		}
	}
	return pattern
}
