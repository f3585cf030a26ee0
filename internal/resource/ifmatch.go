package resource

import (
	"slices"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/store"
)

// precondition is a parsed If-Match precondition (RFC 9110 §13.1.1): none
// (the zero value), "*" (any current version), or a list of version
// ETags of which one must be the current version.
type precondition struct {
	any      bool
	versions []int64
}

// parseIfMatch parses an If-Match header (or a Bundle entry's
// request.ifMatch): "" is none, "*" any current version, else a
// comma-separated list of version ETags (W/"3", "3"). Anything else is a
// 400 that says what is wrong.
func parseIfMatch(s string) (precondition, error) {
	if strings.TrimSpace(s) == "" {
		return precondition{}, nil
	}
	if strings.TrimSpace(s) == "*" {
		return precondition{any: true}, nil
	}
	var m precondition
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // RFC 9110 §5.6.1: empty list elements are ignored
		}
		if part == "*" {
			return precondition{}, outcome.BadRequest("If-Match: \"*\" must stand alone, not in a list of ETags")
		}
		v, err := ParseETag(part)
		if err != nil {
			return precondition{}, outcome.BadRequest("If-Match: %s", err.Error())
		}
		if len(m.versions) == maxIfMatchTags {
			return precondition{}, outcome.BadRequest("If-Match: more than %d ETags", maxIfMatchTags)
		}
		m.versions = append(m.versions, v)
	}
	if len(m.versions) == 0 {
		return precondition{}, outcome.BadRequest("If-Match: %q holds no ETag", outcome.Truncate(s, 100))
	}
	return m, nil
}

// maxIfMatchTags bounds the ETags of one If-Match list.
const maxIfMatchTags = 100

// none reports whether no precondition was given.
func (m precondition) none() bool { return !m.any && len(m.versions) == 0 }

// pinned reports whether the write depends on the exact versions listed:
// a concurrent write is then a 412, not retried (with "*" any version
// will do, so a retry is as correct as the first attempt).
func (m precondition) pinned() bool { return len(m.versions) > 0 }

// String renders m as an If-Match value (for messages).
func (m precondition) String() string {
	if m.any {
		return "*"
	}
	tags := make([]string, len(m.versions))
	for i, v := range m.versions {
		tags[i] = ETag(v)
	}
	return strings.Join(tags, ", ")
}

// check is the precondition on cur, the current version of typ/id (nil
// or deleted: none): a 412 unless m is none or matches it.
func (m precondition) check(cur *store.Resource, typ, id string) error {
	switch {
	case m.none():
		return nil
	case cur == nil || cur.Deleted:
		return preconditionFailed("If-Match %s given but %s/%s does not exist", m, typ, id)
	case m.any || slices.Contains(m.versions, cur.VersionID):
		return nil
	}
	return preconditionFailed("If-Match %s does not match the current version %s of %s/%s", m, ETag(cur.VersionID), typ, id)
}

// stale is the 412 of a pinned write that lost a race with another.
func (m precondition) stale(what string) error {
	return preconditionFailed("%s was modified concurrently; If-Match %s no longer matches", what, m)
}
