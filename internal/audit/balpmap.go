package audit

import (
	"strings"
	"unicode/utf8"
)

// The AuditEvent as the generic JSON value its stored bytes decode to
// (objects map[string]any, arrays []any, strings as json.Marshal coerces
// them to valid UTF-8): the copy into the FHIR store extracts the search
// index from it without decoding the bytes the writer has just encoded.
// TestToMapMatchesDecode holds it to the decoding of appendJSON's output.

func (ae *auditEvent) toMap() map[string]any {
	m := make(map[string]any, 12)
	m["resourceType"] = jsonStr(ae.ResourceType)
	m["id"] = jsonStr(ae.ID)
	mt := map[string]any{"versionId": jsonStr(ae.Meta.VersionID), "lastUpdated": jsonStr(ae.Meta.LastUpdated)}
	if len(ae.Meta.Profile) > 0 {
		mt["profile"] = stringsValue(ae.Meta.Profile)
	}
	m["meta"] = mt
	m["type"] = ae.Type.toMap()
	if len(ae.Subtype) > 0 {
		m["subtype"] = codingsValue(ae.Subtype)
	}
	if ae.Action != "" {
		m["action"] = jsonStr(ae.Action)
	}
	m["recorded"] = jsonStr(ae.Recorded)
	if ae.Outcome != "" {
		m["outcome"] = jsonStr(ae.Outcome)
	}
	if ae.OutcomeDesc != "" {
		m["outcomeDesc"] = jsonStr(ae.OutcomeDesc)
	}
	if ae.Agent == nil {
		m["agent"] = nil
	} else {
		l := make([]any, len(ae.Agent))
		for i := range ae.Agent {
			l[i] = ae.Agent[i].toMap()
		}
		m["agent"] = l
	}
	m["source"] = ae.Source.toMap()
	if len(ae.Entity) > 0 {
		l := make([]any, len(ae.Entity))
		for i := range ae.Entity {
			l[i] = ae.Entity[i].toMap()
		}
		m["entity"] = l
	}
	return m
}

func (c *coding) toMap() map[string]any {
	m := make(map[string]any, 3)
	if c.System != "" {
		m["system"] = jsonStr(c.System)
	}
	m["code"] = jsonStr(c.Code)
	if c.Display != "" {
		m["display"] = jsonStr(c.Display)
	}
	return m
}

func codingsValue(cs []coding) any {
	if cs == nil {
		return nil
	}
	l := make([]any, len(cs))
	for i := range cs {
		l[i] = cs[i].toMap()
	}
	return l
}

func stringsValue(ss []string) []any {
	l := make([]any, len(ss))
	for i, s := range ss {
		l[i] = jsonStr(s)
	}
	return l
}

func (r *reference) toMap() map[string]any {
	m := make(map[string]any, 3)
	if r.Reference != "" {
		m["reference"] = jsonStr(r.Reference)
	}
	if r.Identifier != nil {
		m["identifier"] = map[string]any{"system": jsonStr(r.Identifier.System), "value": jsonStr(r.Identifier.Value)}
	}
	if r.Display != "" {
		m["display"] = jsonStr(r.Display)
	}
	return m
}

func (a *agent) toMap() map[string]any {
	m := make(map[string]any, 6)
	if a.Type != nil {
		m["type"] = map[string]any{"coding": codingsValue(a.Type.Coding)}
	}
	if a.Who != nil {
		m["who"] = a.Who.toMap()
	}
	if a.Name != "" {
		m["name"] = jsonStr(a.Name)
	}
	m["requestor"] = a.Requestor
	if len(a.Policy) > 0 {
		m["policy"] = stringsValue(a.Policy)
	}
	if a.Network != nil {
		m["network"] = map[string]any{"address": jsonStr(a.Network.Address), "type": jsonStr(a.Network.Type)}
	}
	return m
}

func (s *source) toMap() map[string]any {
	m := make(map[string]any, 3)
	if s.Site != "" {
		m["site"] = jsonStr(s.Site)
	}
	m["observer"] = s.Observer.toMap()
	if len(s.Type) > 0 {
		m["type"] = codingsValue(s.Type)
	}
	return m
}

func (e *entity) toMap() map[string]any {
	m := make(map[string]any, 6)
	if e.What != nil {
		m["what"] = e.What.toMap()
	}
	if e.Type != nil {
		m["type"] = e.Type.toMap()
	}
	if e.Role != nil {
		m["role"] = e.Role.toMap()
	}
	if e.Description != "" {
		m["description"] = jsonStr(e.Description)
	}
	if e.Query != "" {
		m["query"] = jsonStr(e.Query)
	}
	if len(e.Detail) > 0 {
		l := make([]any, len(e.Detail))
		for i, d := range e.Detail {
			l[i] = map[string]any{"type": jsonStr(d.Type), "valueString": jsonStr(d.ValueString)}
		}
		m["detail"] = l
	}
	return m
}

// jsonStr is s as it reads back from its JSON encoding: every byte of
// invalid UTF-8 replaced by U+FFFD, as encoding/json (and appendString)
// writes it.
func jsonStr(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
