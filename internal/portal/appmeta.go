package portal

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the goose version table of the portal's own tables
// (app metadata).
const VersionTable = "lapis_portal_goose_version"

const migrationLockID = 0x6c617069735f7061 // "lapis_pa"

// AppMeta is what the portal keeps of an app beside its OAuth client.
type AppMeta struct {
	Env         string    `json:"environment"`
	ClientID    string    `json:"client_id"`
	OrgID       string    `json:"org_id"`
	Preset      string    `json:"preset,omitempty"`
	Description string    `json:"description,omitempty"`
	LogoURI     string    `json:"logo_uri,omitempty"`
	Homepage    string    `json:"homepage,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// metaStore keeps AppMeta rows in the portal database.
type metaStore struct {
	w, r     *sql.DB
	postgres bool
}

func newMetaStore(ctx context.Context, h *database.DB) (*metaStore, error) {
	s := &metaStore{w: h.Writer, r: h.Reader, postgres: h.Postgres()}
	if err := migrate.Up(ctx, s.w, migrations, s.postgres, VersionTable, migrationLockID); err != nil {
		return nil, fmt.Errorf("portal: migrate: %w", err)
	}
	return s, nil
}

func (s *metaStore) put(ctx context.Context, m AppMeta) error {
	q := "INSERT INTO portal_app (env, client_id, org_id, preset, description, logo_uri, homepage, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) " +
		"ON CONFLICT (env, client_id) DO UPDATE SET org_id = excluded.org_id, preset = excluded.preset, description = excluded.description, " +
		"logo_uri = excluded.logo_uri, homepage = excluded.homepage"
	_, err := s.w.ExecContext(ctx, database.Rebind(s.postgres, q), m.Env, m.ClientID, m.OrgID, m.Preset, m.Description, m.LogoURI, m.Homepage, m.CreatedAt.Unix())
	if err != nil {
		return fmt.Errorf("portal: store app metadata: %w", err)
	}
	return nil
}

// get returns the metadata of env's client id (zero AppMeta when none).
func (s *metaStore) get(ctx context.Context, env, id string) (AppMeta, error) {
	m := AppMeta{Env: env, ClientID: id}
	var created int64
	err := s.r.QueryRowContext(ctx, database.Rebind(s.postgres, "SELECT org_id, preset, description, logo_uri, homepage, created_at FROM portal_app WHERE env = ? AND client_id = ?"), env, id).
		Scan(&m.OrgID, &m.Preset, &m.Description, &m.LogoURI, &m.Homepage, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("portal: app metadata: %w", err)
	}
	m.CreatedAt = time.Unix(created, 0).UTC()
	return m, nil
}

func (s *metaStore) remove(ctx context.Context, env, id string) error {
	_, err := s.w.ExecContext(ctx, database.Rebind(s.postgres, "DELETE FROM portal_app WHERE env = ? AND client_id = ?"), env, id)
	return err
}
