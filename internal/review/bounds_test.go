package review_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/review"
)

// TestBuildBounds: the number of redirect URIs and scopes and the length
// of a URI are bounded (an InvalidError, so a 400, not a huge client).
func TestBuildBounds(t *testing.T) {
	many := make([]string, review.MaxRedirectURIs+1)
	for i := range many {
		many[i] = fmt.Sprintf("https://app.example/cb%d", i)
	}
	scopes := strings.Repeat("patient/Patient.rs ", review.MaxScopes+1)
	long := "https://app.example/" + strings.Repeat("a", 2100)
	for name, spec := range map[string]review.AppSpec{
		"redirects":   {Preset: review.PatientStandalone, Name: "A", RedirectURIs: many},
		"scopes":      {Preset: review.PatientStandalone, Name: "A", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{scopes}},
		"long uri":    {Preset: review.PatientStandalone, Name: "A", RedirectURIs: []string{long}},
		"long launch": {Preset: review.EHRLaunch, Name: "A", RedirectURIs: []string{"https://app.example/cb"}, LaunchURI: long},
	} {
		var ie *review.InvalidError
		if _, err := review.Build(spec); !errors.As(err, &ie) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	ok := review.AppSpec{Preset: review.PatientStandalone, Name: "A", RedirectURIs: many[:review.MaxRedirectURIs]}
	if _, err := review.Build(ok); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
}
