package ratelimit

import (
	"strings"
	"testing"
	"unsafe"
)

// TestKeyCacheCopiesID: the key cache keeps its own copy of a caller's id,
// not the string it was handed. A patient id is a substring of the request's
// query or form body (up to a megabyte): a cached substring would keep that
// whole request alive, and the cache's bound on entries would not bound its
// memory.
func TestKeyCacheCopiesID(t *testing.T) {
	m := New(Options{})
	body := "patient=" + strings.Repeat("x", 64) + "," + strings.Repeat("j", 1<<16)
	id := body[len("patient=") : len("patient=")+64]
	if got, want := m.key(ScopePatient, id), ScopePatient+":"+hashID(id); got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	m.keysMu.RLock()
	defer m.keysMu.RUnlock()
	if len(m.keys) != 1 {
		t.Fatalf("%d cached keys, want 1", len(m.keys))
	}
	bodyStart := uintptr(unsafe.Pointer(unsafe.StringData(body)))
	for k := range m.keys {
		p := uintptr(unsafe.Pointer(unsafe.StringData(k.id)))
		if p >= bodyStart && p < bodyStart+uintptr(len(body)) {
			t.Fatal("the cached id points into the request's bytes")
		}
	}
}
