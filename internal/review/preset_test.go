package review_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/review"
)

func TestPresets(t *testing.T) {
	jwks := json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-384","kid":"k1","x":"x","y":"y"}]}`)
	good := map[string]review.AppSpec{
		review.PatientStandalone: {Preset: review.PatientStandalone, Name: "My PHR", RedirectURIs: []string{"https://phr.example/cb", "com.example.phr:/cb"}},
		review.EHRLaunch:         {Preset: review.EHRLaunch, Name: "Chart tool", RedirectURIs: []string{"https://ct.example/cb"}, LaunchURI: "https://ct.example/launch"},
		review.ConfidentialWeb:   {Preset: review.ConfidentialWeb, Name: "Portal", RedirectURIs: []string{"http://localhost:8080/cb"}},
		review.BackendService:    {Preset: review.BackendService, Name: "Nightly sync", JWKSURI: "https://sync.example/jwks.json"},
		"backend pasted":         {Preset: review.BackendService, Name: "Sync 2", JWKS: jwks, Scopes: []string{"system/Patient.rs system/Observation.rs"}},
	}
	wantType := map[string]string{review.PatientStandalone: "public", review.EHRLaunch: "public", review.ConfidentialWeb: "confidential",
		review.BackendService: "backend", "backend pasted": "backend"}
	for name, spec := range good {
		req, err := review.Build(spec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if req.Type != wantType[name] || req.Name == "" || len(req.Scopes) == 0 {
			t.Fatalf("%s: %+v", name, req)
		}
	}
	if req, _ := review.Build(good[review.PatientStandalone]); !slices.Equal(req.Scopes, []string{"launch/patient", "openid", "fhirUser", "patient/*.rs", "offline_access"}) {
		t.Fatalf("patient preset scopes: %v", req.Scopes)
	}
	if req, _ := review.Build(good["backend pasted"]); len(req.JWKS) == 0 || req.JWKSURI != "" || len(req.Scopes) != 2 {
		t.Fatalf("pasted JWKS: %+v", req)
	}

	bad := []struct {
		name  string
		spec  review.AppSpec
		field string
		says  string
	}{
		{"unknown preset", review.AppSpec{Preset: "mobile", Name: "x"}, "preset", "patient-standalone"},
		{"no name", review.AppSpec{Preset: review.PatientStandalone, RedirectURIs: []string{"https://a.example/cb"}}, "name", "required"},
		{"no redirect", review.AppSpec{Preset: review.PatientStandalone, Name: "x"}, "redirect_uris", "at least one"},
		{"http redirect", review.AppSpec{Preset: review.PatientStandalone, Name: "x", RedirectURIs: []string{"http://a.example/cb"}}, "redirect_uris", "https"},
		{"fragment", review.AppSpec{Preset: review.PatientStandalone, Name: "x", RedirectURIs: []string{"https://a.example/cb#x"}}, "redirect_uris", "fragment"},
		{"relative", review.AppSpec{Preset: review.PatientStandalone, Name: "x", RedirectURIs: []string{"/cb"}}, "redirect_uris", "absolute"},
		{"no launch URI", review.AppSpec{Preset: review.EHRLaunch, Name: "x", RedirectURIs: []string{"https://a.example/cb"}}, "launch_uri", "required"},
		{"ehr without launch scope", review.AppSpec{Preset: review.EHRLaunch, Name: "x", RedirectURIs: []string{"https://a.example/cb"}, LaunchURI: "https://a.example/l", Scopes: []string{"openid patient/*.rs"}}, "scopes", "launch"},
		{"system scope on a patient app", review.AppSpec{Preset: review.PatientStandalone, Name: "x", RedirectURIs: []string{"https://a.example/cb"}, Scopes: []string{"system/*.rs"}}, "scopes", "system/*.rs"},
		{"bad resource scope", review.AppSpec{Preset: review.BackendService, Name: "x", JWKSURI: "https://a.example/j", Scopes: []string{"system/patient.zz"}}, "scopes", "not available"},
		{"backend without keys", review.AppSpec{Preset: review.BackendService, Name: "x"}, "jwks_uri", "required"},
		{"backend with both", review.AppSpec{Preset: review.BackendService, Name: "x", JWKSURI: "https://a.example/j", JWKS: jwks}, "jwks", "not both"},
		{"backend http jwks_uri", review.AppSpec{Preset: review.BackendService, Name: "x", JWKSURI: "http://a.example/j"}, "jwks_uri", "https"},
		{"backend empty jwks", review.AppSpec{Preset: review.BackendService, Name: "x", JWKS: json.RawMessage(`{"keys":[]}`)}, "jwks", "keys"},
		{"backend with redirect", review.AppSpec{Preset: review.BackendService, Name: "x", JWKSURI: "https://a.example/j", RedirectURIs: []string{"https://a.example/cb"}}, "redirect_uris", "not used"},
		{"jwks on a web app", review.AppSpec{Preset: review.ConfidentialWeb, Name: "x", RedirectURIs: []string{"https://a.example/cb"}, JWKSURI: "https://a.example/j"}, "jwks", "only for backend"},
	}
	for _, c := range bad {
		_, err := review.Build(c.spec)
		var ie *review.InvalidError
		if !errors.As(err, &ie) || ie.Field != c.field || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want field %s saying %q", c.name, err, c.field, c.says)
		}
	}
	if len(review.Presets()) != 4 {
		t.Fatal("four presets")
	}
}
