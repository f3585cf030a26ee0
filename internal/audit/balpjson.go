package audit

import (
	"strconv"
	"unicode/utf8"
)

// The stored AuditEvent JSON, written field by field: every read is
// recorded, and encoding/json's reflection was a sizeable part of the
// writer's work. The output is byte for byte what json.Marshal makes of
// the same auditEvent (field order, omitempty, string escaping with HTML
// characters escaped); TestAppendJSONMatchesMarshal holds it to that.

func (ae *auditEvent) appendJSON(b []byte) []byte {
	b = append(b, `{"resourceType":`...)
	b = appendString(b, ae.ResourceType)
	b = append(b, `,"id":`...)
	b = appendString(b, ae.ID)
	b = append(b, `,"meta":{"versionId":`...)
	b = appendString(b, ae.Meta.VersionID)
	b = append(b, `,"lastUpdated":`...)
	b = appendString(b, ae.Meta.LastUpdated)
	if len(ae.Meta.Profile) > 0 {
		b = append(b, `,"profile":`...)
		b = appendStrings(b, ae.Meta.Profile)
	}
	b = append(b, `},"type":`...)
	b = ae.Type.appendJSON(b)
	if len(ae.Subtype) > 0 {
		b = append(b, `,"subtype":`...)
		b = appendCodings(b, ae.Subtype)
	}
	if ae.Action != "" {
		b = append(b, `,"action":`...)
		b = appendString(b, ae.Action)
	}
	b = append(b, `,"recorded":`...)
	b = appendString(b, ae.Recorded)
	if ae.Outcome != "" {
		b = append(b, `,"outcome":`...)
		b = appendString(b, ae.Outcome)
	}
	if ae.OutcomeDesc != "" {
		b = append(b, `,"outcomeDesc":`...)
		b = appendString(b, ae.OutcomeDesc)
	}
	b = append(b, `,"agent":`...)
	if ae.Agent == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range ae.Agent {
			if i > 0 {
				b = append(b, ',')
			}
			b = ae.Agent[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = append(b, `,"source":`...)
	b = ae.Source.appendJSON(b)
	if len(ae.Entity) > 0 {
		b = append(b, `,"entity":[`...)
		for i := range ae.Entity {
			if i > 0 {
				b = append(b, ',')
			}
			b = ae.Entity[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (c *coding) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if c.System != "" {
		b = append(b, `"system":`...)
		b = appendString(b, c.System)
		b = append(b, ',')
	}
	b = append(b, `"code":`...)
	b = appendString(b, c.Code)
	if c.Display != "" {
		b = append(b, `,"display":`...)
		b = appendString(b, c.Display)
	}
	return append(b, '}')
}

func appendCodings(b []byte, cs []coding) []byte {
	if cs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = cs[i].appendJSON(b)
	}
	return append(b, ']')
}

func (r *reference) appendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	if r.Reference != "" {
		b = field(b, &sep, `"reference":`)
		b = appendString(b, r.Reference)
	}
	if r.Identifier != nil {
		b = field(b, &sep, `"identifier":{"system":`)
		b = appendString(b, r.Identifier.System)
		b = append(b, `,"value":`...)
		b = appendString(b, r.Identifier.Value)
		b = append(b, '}')
	}
	if r.Display != "" {
		b = field(b, &sep, `"display":`)
		b = appendString(b, r.Display)
	}
	return append(b, '}')
}

func (a *agent) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if a.Type != nil {
		b = append(b, `"type":{"coding":`...)
		b = appendCodings(b, a.Type.Coding)
		b = append(b, `},`...)
	}
	if a.Who != nil {
		b = append(b, `"who":`...)
		b = a.Who.appendJSON(b)
		b = append(b, ',')
	}
	if a.Name != "" {
		b = append(b, `"name":`...)
		b = appendString(b, a.Name)
		b = append(b, ',')
	}
	b = append(b, `"requestor":`...)
	b = strconv.AppendBool(b, a.Requestor)
	if len(a.Policy) > 0 {
		b = append(b, `,"policy":`...)
		b = appendStrings(b, a.Policy)
	}
	if a.Network != nil {
		b = append(b, `,"network":{"address":`...)
		b = appendString(b, a.Network.Address)
		b = append(b, `,"type":`...)
		b = appendString(b, a.Network.Type)
		b = append(b, '}')
	}
	return append(b, '}')
}

func (s *source) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if s.Site != "" {
		b = append(b, `"site":`...)
		b = appendString(b, s.Site)
		b = append(b, ',')
	}
	b = append(b, `"observer":`...)
	b = s.Observer.appendJSON(b)
	if len(s.Type) > 0 {
		b = append(b, `,"type":`...)
		b = appendCodings(b, s.Type)
	}
	return append(b, '}')
}

func (e *entity) appendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	if e.What != nil {
		b = field(b, &sep, `"what":`)
		b = e.What.appendJSON(b)
	}
	if e.Type != nil {
		b = field(b, &sep, `"type":`)
		b = e.Type.appendJSON(b)
	}
	if e.Role != nil {
		b = field(b, &sep, `"role":`)
		b = e.Role.appendJSON(b)
	}
	if e.Description != "" {
		b = field(b, &sep, `"description":`)
		b = appendString(b, e.Description)
	}
	if e.Query != "" {
		b = field(b, &sep, `"query":`)
		b = appendString(b, e.Query)
	}
	if len(e.Detail) > 0 {
		b = field(b, &sep, `"detail":[`)
		for i, d := range e.Detail {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":`...)
			b = appendString(b, d.Type)
			b = append(b, `,"valueString":`...)
			b = appendString(b, d.ValueString)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does
// (json.Marshal escapes <, > and & too, replaces invalid UTF-8 with
// U+FFFD and escapes U+2028 and U+2029).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// field appends a field name, after a comma unless it is the first.
func field(b []byte, sep *bool, name string) []byte {
	if *sep {
		b = append(b, ',')
	}
	*sep = true
	return append(b, name...)
}
