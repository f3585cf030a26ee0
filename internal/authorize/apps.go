package authorize

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/oauth"
	"github.com/lapis-health/lapis/internal/web"
)

// appsPage is the data of the "apps" and "apps_login" templates.
type appsPage struct {
	Title, Nonce, Base, CSRF, Error, Message, User, Username string
	Apps                                                     []appView
}

// appView is one app on the apps page.
type appView struct {
	ClientID, Name, Created, LastUsed string
	Scopes                            []string
}

// renderApps writes an apps page with the headers of every page.
func (s *Pages) renderApps(w http.ResponseWriter, r *http.Request, status int, name string, p *appsPage) {
	p.Nonce, p.Base = web.NewNonce(), s.prefix
	s.renderer.Execute(w, r, status, name, p, p.Nonce)
}

// handleApps is the apps page. GET shows the sign-in form, or, for a
// signed-in user, the apps that hold live grants for them (name, scopes,
// authorized and last used) each with a Revoke button. POST (CSRF token
// and cross-origin protection, like every page form) either signs in
// (action=login, through signIn like /auth/login) or revokes every token
// family of one app for this user (action=revoke, client_id): its refresh
// tokens are deleted and its access tokens are on the revocation list
// the Verifier and introspection consult, so both stop working at once.
func (s *Pages) handleApps(w http.ResponseWriter, r *http.Request) {
	st, _ := s.cfg.Clients.(oauth.AdminStore) // the database's; else 503
	if !s.pagesReady() || st == nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Authorization is not configured on this server.")
		return
	}
	var sess *web.Session
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var err error
		if sess, err = s.sessions.Ensure(w, r); err != nil {
			s.internalError(w, r, err)
			return
		}
	case http.MethodPost:
		var ok bool
		if sess, ok = s.pageSession(w, r); !ok {
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	ctx := r.Context()
	if r.Method == http.MethodPost && r.PostForm.Get("action") == "login" {
		username := r.PostForm.Get("username")
		_, err := s.signIn(w, r, sess, username, r.PostForm.Get("password"))
		if errors.Is(err, errBadLogin) {
			s.renderApps(w, r, http.StatusUnauthorized, "apps_login", &appsPage{Title: "Sign in", CSRF: sess.CSRF,
				Error: "Invalid username or password.", Username: oauth.NormalizeUsername(username)})
			return
		} else if err != nil {
			s.signInError(w, r, err)
			return
		}
		web.Headers(w, "x")
		http.Redirect(w, r, s.prefix+oauth.PathApps, http.StatusSeeOther)
		return
	}
	acct, err := s.sessionAccount(ctx, sess, sess.LoggedIn())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if acct == nil {
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusForbidden
		}
		s.renderApps(w, r, status, "apps_login", &appsPage{Title: "Sign in", CSRF: sess.CSRF})
		return
	}
	grants, err := st.Grants(ctx, authdb.GrantFilter{Subject: acct.Subject}, s.now())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	p := &appsPage{Title: "Connected apps", CSRF: sess.CSRF, User: acct.Username}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		if r.PostForm.Get("action") != "revoke" || r.PostForm.Get("client_id") == "" {
			s.errorPage(w, r, http.StatusBadRequest, "The form is malformed.")
			return
		}
		id := r.PostForm.Get("client_id")
		name := ""
		kept := grants[:0:0]
		for _, g := range grants {
			if g.ClientID == id {
				name = appName(g)
				continue
			}
			kept = append(kept, g)
		}
		n, err := st.RevokeGrants(ctx, authdb.GrantFilter{ClientID: id, Subject: acct.Subject}, s.now())
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		if n == 0 && name == "" {
			p.Error = "That app has no access to revoke."
			status = http.StatusNotFound
		} else {
			p.Message = "Access for " + name + " was revoked. It can no longer read your records."
			if name == "" {
				p.Message = "Access was revoked."
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "oauth: user revoked an app", slog.String("client_id", id), slog.String("subject", acct.Subject), slog.Int("revoked", n))
		}
		grants = kept
	}
	for _, g := range grants {
		p.Apps = append(p.Apps, appView{ClientID: g.ClientID, Name: appName(g), Scopes: g.Scopes,
			Created: g.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), LastUsed: g.LastUsedAt.UTC().Format("2006-01-02 15:04 MST")})
	}
	s.renderApps(w, r, status, "apps", p)
}

// appName is the name shown for a grant's client.
func appName(g authdb.GrantSummary) string {
	if g.ClientName != "" {
		return g.ClientName
	}
	return "Deleted app " + g.ClientID
}
