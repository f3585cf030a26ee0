package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/authdb"
	"github.com/lapis-health/lapis/internal/web"
)

// CreateLaunch stores an EHR launch context outside the launch page: the
// app clientID launched by the account username, with patient (and
// encounter, optional) in context, usable once within lifetime (at most
// an hour). It returns the launch value to send to the app's launch URI
// with iss; the authorization request that uses it must be made by that
// account. The developer portal's sandbox test launches use it. An
// unknown account is authdb.ErrNotFound.
func (s *Server) CreateLaunch(ctx context.Context, clientID, username, patient, encounter string, lifetime time.Duration) (string, error) {
	if s.cfg.Accounts == nil || s.cfg.Launches == nil {
		return "", errors.New("oauth: launches are not configured")
	}
	if clientID == "" || patient == "" || lifetime <= 0 || lifetime > time.Hour {
		return "", errors.New("oauth: a launch needs a client, a patient and a lifetime of at most an hour")
	}
	acct, err := s.cfg.Accounts.AccountByUsername(ctx, NormalizeUsername(username))
	if err != nil {
		return "", fmt.Errorf("oauth: launch account: %w", err)
	}
	launch := web.RandomToken()
	l := &authdb.Launch{ClientID: clientID, Subject: acct.Subject, Patient: patient, Encounter: encounter, Expires: s.now().Add(lifetime)}
	if err := s.cfg.Launches.SaveLaunch(ctx, web.HashToken(launch), l); err != nil {
		return "", err
	}
	return launch, nil
}
