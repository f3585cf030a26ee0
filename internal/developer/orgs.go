package developer

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/randtoken"
)

func (s *Service) insertOrg(ctx context.Context, tx txish, org *Org, ownerID string, now time.Time) error {
	org.CreatedAt = now.UTC().Truncate(time.Second)
	if _, err := tx.ExecContext(ctx, s.rebind("INSERT INTO dev_org (id, name, created_at) VALUES (?, ?, ?)"), org.ID, org.Name, now.Unix()); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.rebind("INSERT INTO dev_member (org_id, developer_id, role, created_at) VALUES (?, ?, ?, ?)"), org.ID, ownerID, RoleOwner, now.Unix())
	return err
}

// CreateOrg creates an organisation with the developer as its owner.
func (s *Service) CreateOrg(ctx context.Context, devID, name string) (*Org, error) {
	name, err := validateName(name, "organisation name")
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, invalid("the organisation needs a name")
	}
	if _, err := s.Developer(ctx, devID); err != nil {
		return nil, err
	}
	org := &Org{ID: uuid.NewString(), Name: name}
	if err := s.tx(ctx, func(tx txish) error { return s.insertOrg(ctx, tx, org, devID, s.now()) }); err != nil {
		return nil, err
	}
	return org, nil
}

// Org returns the organisation id, for operators' pages (callers acting
// for a developer use Membership, which checks membership).
func (s *Service) Org(ctx context.Context, id string) (*Org, error) {
	var o Org
	var created int64
	err := s.r.QueryRowContext(ctx, s.rebind("SELECT id, name, created_at FROM dev_org WHERE id = ?"), id).Scan(&o.ID, &o.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	o.CreatedAt = time.Unix(created, 0).UTC()
	return &o, nil
}

// Memberships lists the developer's organisations, oldest first.
func (s *Service) Memberships(ctx context.Context, devID string) ([]Membership, error) {
	return database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (Membership, error) { return scanMembership(rows) }, s.rebind("SELECT o.id, o.name, o.created_at, m.role FROM dev_member m JOIN dev_org o ON o.id = m.org_id WHERE m.developer_id = ? ORDER BY o.created_at, o.id"), devID)
}

// Membership returns the organisation orgID with the developer's role in
// it; ErrNotFound when the developer is not a member (whether or not the
// organisation exists).
func (s *Service) Membership(ctx context.Context, devID, orgID string) (*Membership, error) {
	m, err := scanMembership(s.r.QueryRowContext(ctx, s.rebind("SELECT o.id, o.name, o.created_at, m.role FROM dev_member m JOIN dev_org o ON o.id = m.org_id WHERE m.developer_id = ? AND m.org_id = ?"), devID, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// scanMembership reads a row of o.id, o.name, o.created_at, m.role.
func scanMembership(sc scanner) (m Membership, err error) {
	var created int64
	err = sc.Scan(&m.ID, &m.Name, &created, &m.Role)
	m.CreatedAt = time.Unix(created, 0).UTC()
	return m, err
}

// requireOwner checks that devID owns orgID: ErrNotFound for a
// non-member, ErrForbidden for a member who is not an owner.
func (s *Service) requireOwner(ctx context.Context, devID, orgID string) error {
	m, err := s.Membership(ctx, devID, orgID)
	if err != nil {
		return err
	}
	if m.Role != RoleOwner {
		return ErrForbidden
	}
	return nil
}

// Members lists the organisation's members for one of them.
func (s *Service) Members(ctx context.Context, devID, orgID string) ([]Member, error) {
	if _, err := s.Membership(ctx, devID, orgID); err != nil {
		return nil, err
	}
	return database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (m Member, err error) {
		err = rows.Scan(&m.DeveloperID, &m.OrgID, &m.Role, &m.Email, &m.Name)
		return m, err
	}, s.rebind("SELECT m.developer_id, m.org_id, m.role, d.email, d.name FROM dev_member m JOIN dev_developer d ON d.id = m.developer_id WHERE m.org_id = ? ORDER BY d.email"), orgID)
}

func validRole(r string) error {
	if r != RoleOwner && r != RoleDeveloper {
		return invalid("the role must be %q or %q", RoleOwner, RoleDeveloper)
	}
	return nil
}

// MaxOpenInvitations bounds an organisation's open (unused, unexpired)
// invitations, so the portal cannot be made to mail any number of
// addresses.
const MaxOpenInvitations = 50

// Invite lets an owner invite an address to the organisation with a role;
// it returns the invitation token to send.
func (s *Service) Invite(ctx context.Context, byID, orgID, email, role string) (string, error) {
	email = NormalizeEmail(email)
	if err := ValidateEmail(email); err != nil {
		return "", err
	}
	if err := validRole(role); err != nil {
		return "", err
	}
	if err := s.requireOwner(ctx, byID, orgID); err != nil {
		return "", err
	}
	var n int
	if err := s.r.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM dev_member m JOIN dev_developer d ON d.id = m.developer_id WHERE m.org_id = ? AND d.email = ?"), orgID, email).Scan(&n); err != nil {
		return "", err
	}
	if n > 0 {
		return "", ErrExists
	}
	if err := s.r.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM dev_token WHERE kind = 'invite' AND org_id = ? AND used_at = 0 AND expires_at > ?"), orgID, s.now().Unix()).Scan(&n); err != nil {
		return "", err
	}
	if n >= MaxOpenInvitations {
		return "", invalid("at most %d open invitations; wait for some to be accepted or to expire", MaxOpenInvitations)
	}
	tok := randtoken.New()
	if err := s.insertToken(ctx, s.w, tok, "invite", byID, orgID, email, role, s.now(), InviteTTL); err != nil {
		return "", err
	}
	return tok, nil
}

// Invitations lists the organisation's open invitations (owners only).
func (s *Service) Invitations(ctx context.Context, byID, orgID string) ([]Invitation, error) {
	if err := s.requireOwner(ctx, byID, orgID); err != nil {
		return nil, err
	}
	return database.AppendRows(ctx, nil, s.r, func(rows *sql.Rows) (i Invitation, err error) {
		var exp int64
		err = rows.Scan(&i.Email, &i.Role, &exp)
		i.Expires = time.Unix(exp, 0).UTC()
		return i, err
	}, s.rebind("SELECT email, role, expires_at FROM dev_token WHERE kind = 'invite' AND org_id = ? AND used_at = 0 AND expires_at > ? ORDER BY created_at"), orgID, s.now().Unix())
}

// AcceptInvite makes the developer a member by an invitation token; the
// developer's verified address must be the invited one.
func (s *Service) AcceptInvite(ctx context.Context, devID, token string) (*Membership, error) {
	d, err := s.Developer(ctx, devID)
	if err != nil {
		return nil, err
	}
	if !d.Verified {
		return nil, ErrNotVerified
	}
	var email string
	var exp, used int64
	err = s.r.QueryRowContext(ctx, s.rebind("SELECT email, expires_at, used_at FROM dev_token WHERE token_hash = ? AND kind = 'invite'"), hashToken(token)).Scan(&email, &exp, &used)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (used != 0 || exp <= s.now().Unix())) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if email != d.Email {
		return nil, invalid("this invitation is for another email address")
	}
	t, err := s.consumeToken(ctx, token, "invite")
	if err != nil {
		return nil, err
	}
	_, err = s.w.ExecContext(ctx, s.rebind("INSERT INTO dev_member (org_id, developer_id, role, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"), t.orgID, devID, t.role, s.now().Unix())
	if err != nil {
		return nil, err
	}
	return s.Membership(ctx, devID, t.orgID)
}

// SetRole lets an owner change a member's role; the last owner cannot be
// demoted.
func (s *Service) SetRole(ctx context.Context, byID, orgID, memberID, role string) error {
	if err := validRole(role); err != nil {
		return err
	}
	if err := s.requireOwner(ctx, byID, orgID); err != nil {
		return err
	}
	return s.tx(ctx, func(tx txish) error {
		if role != RoleOwner {
			if err := s.keepOwner(ctx, tx, orgID, memberID); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, s.rebind("UPDATE dev_member SET role = ? WHERE org_id = ? AND developer_id = ?"), role, orgID, memberID)
		return changed(res, err, ErrNotFound)
	})
}

// RemoveMember removes a member: an owner may remove anyone, a member
// may leave (memberID == byID); the last owner can neither leave nor be
// removed.
func (s *Service) RemoveMember(ctx context.Context, byID, orgID, memberID string) error {
	if byID == memberID {
		if _, err := s.Membership(ctx, byID, orgID); err != nil {
			return err
		}
	} else if err := s.requireOwner(ctx, byID, orgID); err != nil {
		return err
	}
	return s.tx(ctx, func(tx txish) error {
		if err := s.keepOwner(ctx, tx, orgID, memberID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.rebind("DELETE FROM dev_member WHERE org_id = ? AND developer_id = ?"), orgID, memberID)
		return changed(res, err, ErrNotFound)
	})
}

// keepOwner fails with ErrLastOwner when memberID is the organisation's
// only owner.
func (s *Service) keepOwner(ctx context.Context, tx txish, orgID, memberID string) error {
	var role string
	err := tx.QueryRowContext(ctx, s.rebind("SELECT role FROM dev_member WHERE org_id = ? AND developer_id = ?"), orgID, memberID).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if role != RoleOwner {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.rebind("SELECT COUNT(*) FROM dev_member WHERE org_id = ? AND role = ?"), orgID, RoleOwner).Scan(&n); err != nil {
		return err
	}
	if n <= 1 {
		return ErrLastOwner
	}
	return nil
}
