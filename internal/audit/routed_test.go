package audit

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/interaction"
)

// routedStage is Stage behind what the FHIR API's router does first: the
// request's interaction in its context (here by the shape of its path
// below base, as no route is registered).
func routedStage(cfg StageConfig) func(http.Handler) http.Handler {
	prefix := strings.TrimPrefix(base, "http://lapis.test")
	return func(next http.Handler) http.Handler {
		st := Stage(cfg)(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ix := interaction.Parse(prefix, r)
			st.ServeHTTP(w, r.WithContext(interaction.NewContext(r.Context(), ix)))
		})
	}
}

// Classify labels a request (path relative to the FHIR base) as the
// stage does.
func Classify(method, path, rawQuery string) Classified {
	u := &url.URL{Path: "/" + strings.TrimPrefix(path, "/"), RawQuery: rawQuery}
	return classify(interaction.Parse("", &http.Request{Method: method, URL: u}))
}
