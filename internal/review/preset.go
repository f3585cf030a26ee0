package review

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	api "github.com/lapis-health/lapis/client/admin"
	"github.com/lapis-health/lapis/internal/oauth/scope"
)

// Preset names: the kinds of app the portal's wizard offers.
const (
	// PatientStandalone is a patient-facing app launched on its own: a
	// public client using PKCE.
	PatientStandalone = "patient-standalone"
	// EHRLaunch is an app launched from the EHR (launch URI required).
	EHRLaunch = "ehr-launch"
	// ConfidentialWeb is a server-side web app with a client secret.
	ConfidentialWeb = "confidential-web"
	// BackendService is a SMART Backend Services client (private_key_jwt
	// with a hosted JWKS URL or a pasted JWKS) using system scopes.
	BackendService = "backend"
)

// Preset describes one app preset.
type Preset struct {
	// Name is the preset's id (PatientStandalone, …).
	Name string `json:"name"`
	// Title and Description are for people.
	Title       string `json:"title"`
	Description string `json:"description"`
	// Type is the client type it registers (public, confidential,
	// backend).
	Type string `json:"type"`
	// Scopes are the default scopes.
	Scopes []string `json:"scopes"`
	// NeedsRedirect, NeedsLaunchURI and NeedsJWKS say which fields the
	// preset requires.
	NeedsRedirect  bool `json:"needs_redirect"`
	NeedsLaunchURI bool `json:"needs_launch_uri"`
	NeedsJWKS      bool `json:"needs_jwks"`
	// ScopePrefixes are the scope kinds the preset may ask for.
	ScopePrefixes []string `json:"scope_prefixes"`
}

var presets = []Preset{
	{Name: PatientStandalone, Title: "Patient-facing app (standalone launch)",
		Description: "A browser or mobile app a patient opens on their own. Public client: no secret, PKCE (S256) required.",
		Type:        "public", Scopes: []string{"launch/patient", "openid", "fhirUser", "patient/*.rs", "offline_access"},
		NeedsRedirect: true, ScopePrefixes: []string{"patient/", "launch/patient", "openid", "fhirUser", "offline_access", "online_access"}},
	{Name: EHRLaunch, Title: "EHR-launched app",
		Description: "An app a clinician launches from inside the EHR, with the patient and encounter in context.",
		Type:        "public", Scopes: []string{"launch", "openid", "fhirUser", "user/*.rs", "patient/*.rs"},
		NeedsRedirect: true, NeedsLaunchURI: true, ScopePrefixes: []string{"launch", "launch/patient", "launch/encounter", "patient/", "user/", "openid", "fhirUser", "offline_access", "online_access"}},
	{Name: ConfidentialWeb, Title: "Confidential web app",
		Description: "A server-side web app that can keep a client secret (shown once; rotate it with an overlap).",
		Type:        "confidential", Scopes: []string{"launch/patient", "openid", "fhirUser", "patient/*.rs", "offline_access"},
		NeedsRedirect: true, ScopePrefixes: []string{"launch", "launch/patient", "launch/encounter", "patient/", "user/", "openid", "fhirUser", "offline_access", "online_access"}},
	{Name: BackendService, Title: "Backend service",
		Description: "A server-to-server client without a user (SMART Backend Services): authenticates with a JWT signed by its key (private_key_jwt), published at a JWKS URL or pasted as a JWKS.",
		Type:        "backend", Scopes: []string{"system/*.rs"},
		NeedsJWKS: true, ScopePrefixes: []string{"system/"}},
}

// Presets returns the app presets, in the wizard's order.
func Presets() []Preset {
	out := make([]Preset, len(presets))
	for i, p := range presets {
		p.Scopes, p.ScopePrefixes = slices.Clone(p.Scopes), slices.Clone(p.ScopePrefixes)
		out[i] = p
	}
	return out
}

// PresetByName returns the preset name, or false.
func PresetByName(name string) (Preset, bool) {
	for _, p := range Presets() {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

// AppSpec is what the wizard asks for: a preset and the app's details.
type AppSpec struct {
	Preset       string   `json:"preset"`
	Name         string   `json:"name"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	LaunchURI    string   `json:"launch_uri,omitempty"`
	// Scopes replace the preset's defaults when given.
	Scopes []string `json:"scopes,omitempty"`
	// JWKSURI or JWKS (backend only, exactly one).
	JWKSURI string          `json:"jwks_uri,omitempty"`
	JWKS    json.RawMessage `json:"jwks,omitempty"`
	// Owner is the owning organisation ("org:<id>").
	Owner string `json:"owner,omitempty"`
}

// Bounds of an app's registration.
const (
	// MaxRedirectURIs bounds an app's redirect URIs.
	MaxRedirectURIs = 10
	// MaxScopes bounds an app's scopes.
	MaxScopes = 50
	// MaxURILength bounds a redirect or launch URI.
	MaxURILength = 2000
)

// Build turns spec into the admin ClientRequest its preset describes, or
// an *InvalidError saying what is wrong (the admin service validates the
// request again when it creates the client).
func Build(spec AppSpec) (api.ClientRequest, error) {
	p, ok := PresetByName(spec.Preset)
	if !ok {
		return api.ClientRequest{}, &InvalidError{"preset", "must be one of " + strings.Join(presetNames(), ", ")}
	}
	name := strings.TrimSpace(spec.Name)
	if name == "" {
		return api.ClientRequest{}, &InvalidError{"name", "is required"}
	}
	if len([]rune(name)) > 100 {
		return api.ClientRequest{}, &InvalidError{"name", "must be at most 100 characters"}
	}
	req := api.ClientRequest{Name: name, Type: p.Type, Owner: spec.Owner}
	// Redirect URIs.
	if p.NeedsRedirect && len(spec.RedirectURIs) == 0 {
		return api.ClientRequest{}, &InvalidError{"redirect_uris", "needs at least one redirect URI for a " + p.Title}
	}
	if !p.NeedsRedirect && len(spec.RedirectURIs) > 0 {
		return api.ClientRequest{}, &InvalidError{"redirect_uris", "are not used by a " + p.Title + " (it has no user to redirect)"}
	}
	if len(spec.RedirectURIs) > MaxRedirectURIs {
		return api.ClientRequest{}, &InvalidError{"redirect_uris", fmt.Sprintf("must be at most %d", MaxRedirectURIs)}
	}
	for _, u := range spec.RedirectURIs {
		if reason := checkAppURI(u, true); reason != "" {
			return api.ClientRequest{}, &InvalidError{"redirect_uris", "entry " + quote(u) + " " + reason}
		}
	}
	req.RedirectURIs = slices.Clone(spec.RedirectURIs)
	// Launch URI.
	switch {
	case p.NeedsLaunchURI && spec.LaunchURI == "":
		return api.ClientRequest{}, &InvalidError{"launch_uri", "is required for an EHR-launched app (the EHR opens it with iss and launch)"}
	case spec.LaunchURI != "" && p.Name == BackendService:
		return api.ClientRequest{}, &InvalidError{"launch_uri", "is not used by a backend service"}
	case spec.LaunchURI != "":
		if reason := checkAppURI(spec.LaunchURI, false); reason != "" {
			return api.ClientRequest{}, &InvalidError{"launch_uri", reason}
		}
		req.LaunchURI = spec.LaunchURI
	}
	// Scopes.
	scopes := p.Scopes
	if len(spec.Scopes) > 0 {
		scopes = nil
		for _, f := range spec.Scopes {
			scopes = append(scopes, strings.Fields(f)...)
		}
	}
	if len(scopes) == 0 {
		return api.ClientRequest{}, &InvalidError{"scopes", "needs at least one scope"}
	}
	if len(scopes) > MaxScopes {
		return api.ClientRequest{}, &InvalidError{"scopes", fmt.Sprintf("must be at most %d", MaxScopes)}
	}
	for _, sc := range scopes {
		if !scopeFits(p, sc) {
			return api.ClientRequest{}, &InvalidError{"scopes", quote(sc) + " is not available to a " + p.Title + " (allowed: " + strings.Join(p.ScopePrefixes, ", ") + ")"}
		}
	}
	if p.NeedsLaunchURI && !slices.Contains(scopes, "launch") {
		return api.ClientRequest{}, &InvalidError{"scopes", "must include launch for an EHR-launched app"}
	}
	req.Scopes = scopes
	// Keys.
	hasJWKS := len(spec.JWKS) > 0 && string(spec.JWKS) != "null"
	switch {
	case !p.NeedsJWKS && (hasJWKS || spec.JWKSURI != ""):
		return api.ClientRequest{}, &InvalidError{"jwks", "is only for backend services (this app type does not sign client assertions)"}
	case p.NeedsJWKS && hasJWKS && spec.JWKSURI != "":
		return api.ClientRequest{}, &InvalidError{"jwks", "give a JWKS URL or a pasted JWKS, not both"}
	case p.NeedsJWKS && !hasJWKS && spec.JWKSURI == "":
		return api.ClientRequest{}, &InvalidError{"jwks_uri", "is required for a backend service: a JWKS URL (https) or a pasted JWKS with its public key"}
	case spec.JWKSURI != "":
		u, err := url.Parse(spec.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
			return api.ClientRequest{}, &InvalidError{"jwks_uri", "must be an absolute https URL without a fragment"}
		}
		req.JWKSURI = spec.JWKSURI
	case hasJWKS:
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(spec.JWKS, &set); err != nil || len(set.Keys) == 0 {
			return api.ClientRequest{}, &InvalidError{"jwks", "must be a JSON Web Key Set: an object with a non-empty \"keys\" array"}
		}
		req.JWKS = slices.Clone(spec.JWKS)
	}
	return req, nil
}

func presetNames() []string {
	out := make([]string, len(presets))
	for i, p := range presets {
		out[i] = p.Name
	}
	return out
}

// scopeFits reports whether scope sc is one of the preset's kinds; a
// resource scope (patient/, user/, system/) must also parse.
func scopeFits(p Preset, sc string) bool {
	for _, pre := range p.ScopePrefixes {
		if strings.HasSuffix(pre, "/") {
			if strings.HasPrefix(sc, pre) {
				_, ok := scope.ParseResourceScope(sc)
				return ok
			}
			continue
		}
		if sc == pre {
			return true
		}
	}
	return false
}

// checkAppURI checks a redirect or launch URI: absolute, https (http
// only for localhost/loopback during development), no fragment. It
// returns what is wrong, or "".
func checkAppURI(s string, redirect bool) string {
	if len(s) > MaxURILength {
		return fmt.Sprintf("must be at most %d characters", MaxURILength)
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || strings.ContainsAny(s, " \t\r\n") {
		return "must be an absolute URL (https://…)"
	}
	if u.Host == "" && (u.Scheme == "https" || u.Scheme == "http" || !redirect) {
		return "must be an absolute URL (https://…)"
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return "must not have a fragment (#…)"
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return "must use https (http only for localhost)"
		}
	default:
		if !redirect {
			return "must use https"
		}
		// Native apps may use a private-use scheme (RFC 8252 §7.1).
		if !strings.Contains(u.Scheme, ".") {
			return "must use https, http://localhost or a reverse-domain private scheme (com.example.app:/cb)"
		}
	}
	return ""
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + s + `"`
}
