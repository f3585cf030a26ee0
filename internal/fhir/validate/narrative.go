package validate

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// narrativeElements are the XHTML elements R4 allows in Narrative.div
// (txt-1: the basic HTML formatting elements of HTML 4.0 chapters 7–11
// and 15, links, images and tables).
var narrativeElements = map[string]bool{
	"a": true, "abbr": true, "acronym": true, "address": true, "b": true, "bdo": true, "big": true, "blockquote": true,
	"br": true, "caption": true, "center": true, "cite": true, "code": true, "col": true, "colgroup": true, "dd": true,
	"del": true, "dfn": true, "div": true, "dl": true, "dt": true, "em": true, "font": true, "h1": true, "h2": true,
	"h3": true, "h4": true, "h5": true, "h6": true, "hr": true, "i": true, "img": true, "ins": true, "kbd": true,
	"li": true, "ol": true, "p": true, "pre": true, "q": true, "s": true, "samp": true, "small": true, "span": true,
	"strike": true, "strong": true, "sub": true, "sup": true, "table": true, "tbody": true, "td": true, "tfoot": true,
	"th": true, "thead": true, "tr": true, "tt": true, "u": true, "ul": true, "var": true,
}

// checkNarrative enforces txt-1 and txt-2 on a Narrative.div: well-formed
// XHTML whose root is a div, only the allowed elements, no event-handler
// attributes and no script URLs (which would run in any client that
// renders the narrative), and some non-whitespace content. It returns ""
// when the narrative is acceptable, otherwise the reason.
func checkNarrative(div string) string {
	d := xml.NewDecoder(strings.NewReader(div))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	depth, content := 0, false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "the narrative is not well-formed XHTML: " + err.Error()
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := strings.ToLower(t.Name.Local)
			if depth == 0 && name != "div" {
				return "the narrative root element must be <div>"
			}
			if !narrativeElements[name] {
				return "the narrative contains <" + t.Name.Local + ">, which is not allowed (txt-1)"
			}
			if name == "img" {
				content = true
			}
			for _, a := range t.Attr {
				an := strings.ToLower(a.Name.Local)
				if strings.HasPrefix(an, "on") {
					return "the narrative contains the event-handler attribute " + a.Name.Local + ", which is not allowed (txt-1)"
				}
				if an == "href" || an == "src" || an == "action" || an == "formaction" || an == "background" {
					v := strings.ToLower(strings.Join(strings.Fields(a.Value), ""))
					if strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:") || (strings.HasPrefix(v, "data:") && an != "src") {
						return "the narrative contains a script URL in " + a.Name.Local + ", which is not allowed (txt-1)"
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return "the narrative must be a single <div> element"
			}
			if strings.TrimSpace(string(t)) != "" {
				content = true
			}
		case xml.ProcInst, xml.Directive:
			return "the narrative must not contain processing instructions or directives"
		}
	}
	if !content {
		return "the narrative must contain some text or an image (txt-2)"
	}
	return ""
}
