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
	contentType = outcome.ContentType
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

// fhirVersionOK reports whether a fhirVersion media type parameter
// (versioning.html#mt-version) names R4: absent, "4.0" or "4.0.x".
func fhirVersionOK(params map[string]string) (string, bool) {
	v, ok := params["fhirversion"]
	if !ok {
		return "", true
	}
	v = strings.TrimSpace(v)
	return v, v == "4.0" || strings.HasPrefix(v, "4.0.")
}

// parseMediaType parses a media type leniently: a malformed parameter list
// still yields the lower-cased type.
func parseMediaType(s string) (string, map[string]string) {
	mt, params, err := mime.ParseMediaType(s)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(s, ";", 2)[0]))
	}
	return mt, params
}

// negotiate checks _format and Accept: JSON (or anything accepting JSON)
// passes; XML, other formats and other FHIR versions fail with 406.
func negotiate(r *http.Request) error {
	var f string
	if r.URL.RawQuery != "" {
		q, _ := resource.ParseQuery(r.URL.RawQuery) // a malformed query is reported by the handler
		f = q.Get("_format")
	}
	if f != "" {
		mt, params := parseMediaType(f)
		if v, ok := fhirVersionOK(params); !ok {
			return outcome.New(http.StatusNotAcceptable, "not-supported", "_format %q: FHIR version %q is not supported; this server speaks FHIR 4.0 (R4)", f, v)
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
	badVersion := ""
	for _, h := range accepts {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			sawAny = true
			mt, params := parseMediaType(part)
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			if v, ok := fhirVersionOK(params); !ok {
				badVersion = v
				continue
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
	if badVersion != "" {
		return outcome.New(http.StatusNotAcceptable, "not-supported", "FHIR version %q is not supported; this server produces FHIR 4.0 (R4) as application/fhir+json", badVersion)
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
	if v, ok := fhirVersionOK(params); !ok {
		return "", outcome.New(http.StatusUnsupportedMediaType, "not-supported", "FHIR version %q is not supported; send FHIR 4.0 (R4) content", v)
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
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	for _, ce := range r.Header.Values("Content-Encoding") {
		for _, c := range strings.Split(ce, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return nil, outcome.New(http.StatusUnsupportedMediaType, "not-supported", "Content-Encoding %q is not supported; send the body uncompressed", c)
			}
		}
	}
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
	return resource.ParseQuery(r.URL.RawQuery)
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
