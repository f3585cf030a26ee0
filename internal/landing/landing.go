// Package landing serves the page at "/": what this server is, and links
// to its FHIR base, CapabilityStatement, SMART configuration and the
// sign-in pages of its authorization server. The page is static (rendered
// once per FHIR base), loads nothing from elsewhere (no scripts, fonts or
// images) and carries a Content-Security-Policy that admits only its own
// inline style, by hash.
package landing

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// style is the page's only style sheet; the CSP admits it by its hash.
const style = `
:root{--fg:#1d2430;--muted:#5b6575;--bg:#f4f6f9;--card:#fff;--accent:#1f5fbf;--line:#d8dde5}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:40rem;margin:2.5rem auto;padding:0 1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.5rem 1.75rem}
h1{font-size:1.35rem;margin:0 0 .5rem}
h2{font-size:1.05rem;margin:1.25rem 0 .5rem}
p{margin:.5rem 0}
.muted{color:var(--muted);font-size:.9rem}
a{color:var(--accent)}
ul{padding-left:1.2rem}
li{margin:.3rem 0}
code{font-size:.85rem;word-break:break-all}
`

var page = template.Must(template.New("landing").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Lapis FHIR server</title>
<style>{{.Style}}</style>
</head>
<body><main><div class="card">
<h1>Lapis</h1>
<p>A FHIR R4 server with a SMART on FHIR authorization server. Every FHIR interaction needs a credential
(an OAuth access token, an API key or, where enabled, client Basic credentials) and is limited by its SMART scopes.</p>
<p class="muted">FHIR base URL: <code>{{.BaseURL}}</code></p>
<h2>For apps and developers</h2>
<ul>
<li><a href="{{.Base}}/metadata">CapabilityStatement</a> (<code>{{.Base}}/metadata</code>): what the API supports; no credential needed.</li>
<li><a href="{{.Base}}/.well-known/smart-configuration">SMART configuration</a>: the authorization, token and other OAuth endpoints.</li>
<li><a href="{{.Root}}">FHIR base</a> (<code>{{.Root}}</code>): the API itself, with a credential.</li>
{{if .Portal}}<li><a href="{{.Portal}}">Developer portal</a>: sign up, register apps, get API keys, see what your app does, request production access.</li>
{{end}}{{if .Sandbox}}<li>Sandbox (synthetic US Core data, its own clients and keys): FHIR base <code>{{.Sandbox}}</code>, <a href="{{.Sandbox}}/metadata">CapabilityStatement</a>.</li>
{{end}}</ul>
<h2>For people</h2>
<ul>
<li><a href="{{.Base}}/auth/apps">Connected apps</a>: sign in to see and revoke the apps that can access your record.</li>
<li><a href="{{.Base}}/auth/launch">Launch an app</a>: for practitioners, to open an app for a patient.</li>
</ul>
</div></main></body></html>
`))

// Options are the optional parts of a server the landing page links to.
type Options struct {
	// Sandbox is the sandbox environment's FHIR base URL ("" when the
	// server has none).
	Sandbox string
	// Portal is the developer portal's URL ("" when it is off).
	Portal string
}

// Handler returns the handler of the landing page of the server whose FHIR
// base URL is fhirBase ("https://host/fhir"); links use the base's path, so
// they hold behind a reverse proxy. Mount it for GET / only.
func Handler(fhirBase string, o Options) http.Handler {
	fhirBase = strings.TrimSuffix(fhirBase, "/")
	path := fhirBase
	if u, err := url.Parse(fhirBase); err == nil {
		path = strings.TrimSuffix(u.Path, "/")
	}
	var buf bytes.Buffer
	err := page.Execute(&buf, struct {
		Style   template.CSS
		Base    string // path prefix of the links
		Root    string // path of the FHIR base
		BaseURL string
		Sandbox string // path of the sandbox FHIR base
		Portal  string // path of the portal
	}{template.CSS(style), path, cmp.Or(path, "/"), fhirBase, pathOf(o.Sandbox), pathOf(o.Portal)})
	if err != nil {
		panic("landing: " + err.Error()) // a static template with string data
	}
	body := buf.Bytes()
	sum := sha256.Sum256([]byte(style))
	csp := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Length", length)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// pathOf is the path of an absolute URL ("" stays "").
func pathOf(s string) string {
	if u, err := url.Parse(s); err == nil && s != "" {
		return cmp.Or(u.Path, "/")
	}
	return s
}
