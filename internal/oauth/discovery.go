package oauth

import (
	"encoding/json"
	"net/http"
)

// Capabilities are the SMART capabilities advertised: the union of what
// ONC (g)(10) requires for the standalone patient and EHR practitioner
// scenarios (conformance.md §1.2).
var Capabilities = []string{
	"launch-standalone", "launch-ehr",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect",
	"context-standalone-patient", "context-ehr-patient", "context-ehr-encounter",
	"context-banner", "context-style",
	"permission-offline", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
	"authorize-post",
}

// ScopesSupported are the scopes advertised in discovery.
var ScopesSupported = []string{
	"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
	"offline_access", "online_access",
	"patient/*.rs", "user/*.rs", "system/*.rs",
	"patient/*.cruds", "user/*.cruds", "system/*.cruds",
	"patient/*.read", "user/*.read", "system/*.read",
	"patient/*.write", "user/*.write", "system/*.write",
}

// serverMetadata is what both discovery documents say of the
// authorization server (RFC 8414 names shared by SMART and OpenID).
func (s *Server) serverMetadata() map[string]any {
	return map[string]any{
		"issuer":                                s.cfg.Issuer,
		"jwks_uri":                              s.ep.jwks,
		"authorization_endpoint":                s.ep.authorize,
		"token_endpoint":                        s.ep.token,
		"introspection_endpoint":                s.ep.introspect,
		"revocation_endpoint":                   s.ep.revoke,
		"userinfo_endpoint":                     s.ep.userinfo,
		"token_endpoint_auth_methods_supported": []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"authorization_response_iss_parameter_supported":   true,
		"scopes_supported":                                 ScopesSupported,
	}
}

// smartConfiguration is the SMART App Launch discovery document.
func (s *Server) smartConfiguration() map[string]any {
	m := s.serverMetadata()
	m["capabilities"] = Capabilities
	return m
}

// openIDConfiguration is the OpenID Provider metadata document.
func (s *Server) openIDConfiguration() map[string]any {
	m := s.serverMetadata()
	m["subject_types_supported"] = []string{"public"}
	m["id_token_signing_alg_values_supported"] = []string{"RS256"}
	m["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name"}
	return m
}

func (s *Server) handleSMARTConfiguration(w http.ResponseWriter, r *http.Request) {
	s.serveDocument(w, r, s.smartConfiguration())
}

func (s *Server) handleOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	s.serveDocument(w, r, s.openIDConfiguration())
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if s.publicPreamble(w, r) {
		return
	}
	set, err := s.cfg.Keys.JWKS(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	serveJSON(w, r, set)
}

// publicPreamble starts the answer of a public GET document (discovery,
// JWKS): a method other than GET, HEAD or OPTIONS is a 405, and a CORS
// preflight is answered. It reports whether the request is answered.
func (s *Server) publicPreamble(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		s.writeError(w, r, &Error{Code: CodeInvalidRequest, Description: "method not allowed", Status: http.StatusMethodNotAllowed})
		return true
	}
	return cors(w, r, "GET, HEAD")
}

// serveDocument answers a public discovery document: no auth, CORS open.
func (s *Server) serveDocument(w http.ResponseWriter, r *http.Request, doc map[string]any) {
	if s.publicPreamble(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	serveJSON(w, r, doc)
}

func serveJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(append(b, '\n'))
}

// OAuthURIsExtension is the SMART extension URL in the CapabilityStatement.
const OAuthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// CapabilityHook adds rest[0].security to a CapabilityStatement (as a JSON
// object): the SMART-on-FHIR service coding and the oauth-uris extension
// with the same endpoints as the discovery documents. Pass it as
// fhirapi.Config.CapabilityHook.
func (s *Server) CapabilityHook(cs map[string]any) {
	rest, _ := cs["rest"].([]any)
	if len(rest) == 0 {
		return
	}
	r0, ok := rest[0].(map[string]any)
	if !ok {
		return
	}
	uri := func(name, v string) map[string]any { return map[string]any{"url": name, "valueUri": v} }
	r0["security"] = map[string]any{
		"cors": true,
		"service": []any{map[string]any{
			"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
				"code":   "SMART-on-FHIR",
			}},
			"text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
		}},
		"extension": []any{map[string]any{
			"url": OAuthURIsExtension,
			"extension": []any{
				uri("authorize", s.ep.authorize),
				uri("token", s.ep.token),
				uri("introspect", s.ep.introspect),
				uri("revoke", s.ep.revoke),
			},
		}},
	}
}
