package validate

import "strings"

// checkReference validates the shape of Reference.reference.
func (v *Validator) checkReference(s *state, ref string) {
	s.push("reference")
	defer s.pop()
	switch {
	case strings.HasPrefix(ref, "#"):
		if ref != "#" && !checkID(ref[1:]) {
			s.add(CodeValue, "Invalid reference %s: a contained reference must be \"#\" followed by the id of a contained resource", quote(ref))
		}
		return
	case strings.HasPrefix(ref, "urn:uuid:"):
		if !isUUID(ref[len("urn:uuid:"):]) {
			s.add(CodeValue, "Invalid reference %s: expected urn:uuid: followed by a UUID", quote(ref))
		}
		return
	case strings.HasPrefix(ref, "urn:oid:"):
		if !isOID(ref[len("urn:oid:"):]) {
			s.add(CodeValue, "Invalid reference %s: expected urn:oid: followed by a dotted OID", quote(ref))
		}
		return
	}
	if hasScheme(ref) {
		if !noWhitespace(ref) {
			s.add(CodeValue, "Invalid reference %s: URLs must not contain whitespace", quote(ref))
		}
		return
	}
	if _, ok := v.parseRelative(ref); !ok {
		s.add(CodeValue, "Invalid reference %s: expected \"Type/id\", \"Type/id/_history/version\", an absolute URL, \"#id\" of a contained resource, or urn:uuid:/urn:oid:", quote(ref))
	}
}

// checkTarget reports a relative reference to a resource type the element
// does not allow.
func (v *Validator) checkTarget(s *state, p *prop, ref string) {
	typ, ok := v.parseRelative(ref)
	if !ok {
		return
	}
	if _, allowed := p.targets[typ]; allowed {
		return
	}
	s.addAt("reference", CodeInvalid, "Reference to %s is not allowed here; %s may refer to %s", typ, p.elem.Path, strings.Join(p.elem.TargetProfiles, ", "))
}

// parseRelative parses "Type/id", "Type/id/_history/vid" and the conditional
// form "Type?query" used in transactions, returning Type.
func (v *Validator) parseRelative(ref string) (string, bool) {
	if i := strings.IndexByte(ref, '?'); i > 0 && !strings.Contains(ref[:i], "/") {
		typ := ref[:i]
		return typ, v.reg.IsResourceType(typ) && len(ref) > i+1 && noWhitespace(ref)
	}
	typ, rest, ok := strings.Cut(ref, "/")
	if !ok || !v.reg.IsResourceType(typ) {
		return "", false
	}
	id, hist, hasHist := strings.Cut(rest, "/")
	if !checkID(id) || id == "" {
		return "", false
	}
	if hasHist {
		vid, ok := strings.CutPrefix(hist, "_history/")
		if !ok || vid == "" || !checkID(vid) {
			return "", false
		}
	}
	return typ, true
}

// hasScheme reports whether s starts with an RFC 3986 scheme followed by
// ":" (absolute URI).
func hasScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0:
			return len(s) > i+1
		default:
			return false
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// isUUID checks the 8-4-4-4-12 hex form (either case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// isOID checks [0-2](\.(0|[1-9][0-9]*))+ .
func isOID(s string) bool {
	if len(s) < 3 || s[0] < '0' || s[0] > '2' || s[1] != '.' {
		return false
	}
	for _, part := range strings.Split(s[2:], ".") {
		if part == "" || (len(part) > 1 && part[0] == '0') {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}
