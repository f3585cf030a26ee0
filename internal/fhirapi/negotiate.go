package fhirapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/resource"
)

// Media types.
const (
	mtFHIRJSON  = "application/fhir+json"
	mtJSON      = "application/json"
	mtJSONPatch = "application/json-patch+json"
	mtForm      = "application/x-www-form-urlencoded"
	// contentType is the Content-Type of every response body.
	contentType = "application/fhir+json; charset=utf-8"
)

// isXML reports whether a media type or _format value names an XML format.
func isXML(mt string) bool {
	switch mt {
	case "xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir":
		return true
	}
	return false
}

// isJSONType reports whether a media type is a FHIR JSON format.
func isJSONType(mt string) bool {
	switch mt {
	case mtFHIRJSON, mtJSON, "application/json+fhir", "text/json":
		return true
	}
	return false
}

// negotiate checks _format and Accept: JSON (or anything accepting JSON)
// passes; XML and other formats fail with 406.
func negotiate(r *http.Request) error {
	if f := r.URL.Query().Get("_format"); f != "" {
		mt := strings.ToLower(strings.TrimSpace(f))
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = strings.TrimSpace(mt[:i])
		}
		switch {
		case mt == "json" || isJSONType(mt):
			return nil
		case isXML(mt):
			return outcome.New(http.StatusNotAcceptable, "not-supported", "_format %q: XML is not supported; this server speaks JSON only (application/fhir+json)", f)
		default:
			return outcome.New(http.StatusNotAcceptable, "not-supported", "_format %q is not supported; use json or application/fhir+json", f)
		}
	}
	accepts := r.Header.Values("Accept")
	if len(accepts) == 0 {
		return nil
	}
	sawAny := false
	sawXML := false
	for _, h := range accepts {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			sawAny = true
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				mt = strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			switch {
			case isJSONType(mt), mt == "*/*", mt == "application/*":
				return nil
			case isXML(mt):
				sawXML = true
			}
		}
	}
	if !sawAny {
		return nil
	}
	if sawXML {
		return outcome.New(http.StatusNotAcceptable, "not-supported", "XML is not supported; this server produces application/fhir+json only")
	}
	return outcome.New(http.StatusNotAcceptable, "not-supported", "none of the Accept media types is supported; this server produces application/fhir+json")
}

// bodyMediaType returns the media type of the request body ("" when the
// header is absent).
func bodyMediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if strings.TrimSpace(ct) == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", outcome.New(http.StatusUnsupportedMediaType, "not-supported", "malformed Content-Type %q", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "", outcome.New(http.StatusUnsupportedMediaType, "not-supported", "charset %q is not supported; send UTF-8", cs)
	}
	return mt, nil
}

// requireJSONBody checks the Content-Type of a resource body: FHIR JSON
// (or absent, read as JSON) passes, XML and anything else is a 415.
func requireJSONBody(r *http.Request) error {
	mt, err := bodyMediaType(r)
	if err != nil {
		return err
	}
	switch {
	case mt == "" || isJSONType(mt):
		return nil
	case isXML(mt):
		return outcome.New(http.StatusUnsupportedMediaType, "not-supported", "XML bodies are not supported; send application/fhir+json")
	default:
		return outcome.New(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %q is not supported; send application/fhir+json", mt)
	}
}

// readBody reads the request body within the size limit.
func (a *api) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, outcome.New(http.StatusRequestEntityTooLarge, "too-costly", "the request body exceeds the limit of %d bytes", a.maxBody)
		}
		return nil, outcome.BadRequest("the request body could not be read")
	}
	return b, nil
}

// preferences holds the parsed Prefer header.
type preferences struct {
	ret    resource.Return
	strict bool
}

func parsePrefer(r *http.Request) preferences {
	var p preferences
	for _, h := range r.Header.Values("Prefer") {
		for _, tok := range strings.Split(h, ",") {
			tok = strings.TrimSpace(tok)
			if i := strings.IndexByte(tok, ';'); i >= 0 {
				tok = strings.TrimSpace(tok[:i])
			}
			k, v, _ := strings.Cut(tok, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch k {
			case "return":
				switch strings.ToLower(v) {
				case "minimal":
					p.ret = resource.ReturnMinimal
				case "representation":
					p.ret = resource.ReturnRepresentation
				case "operationoutcome":
					p.ret = resource.ReturnOutcome
				}
			case "handling":
				p.strict = strings.EqualFold(v, "strict")
			}
		}
	}
	return p
}

// queryParams decodes the query string; a malformed one is a 400.
func queryParams(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, outcome.BadRequest("the query string is malformed: %s", err.Error())
	}
	return v, nil
}

// criteria returns the query string of a conditional interaction without
// the HTTP-level parameters _format and _pretty.
func criteria(r *http.Request) (string, error) {
	v, err := queryParams(r)
	if err != nil {
		return "", err
	}
	v.Del("_format")
	v.Del("_pretty")
	return v.Encode(), nil
}
