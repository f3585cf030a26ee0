-- +goose Up
-- The refresh token each refresh token replaced (hex SHA-256; NULL for the
-- first of a family and for rows older than this column). A rotated token
-- is accepted again only as the one retry of a lost response: within the
-- grace period, while its successor is still the family's current token
-- and it has no other successor (see RotateRefreshToken).
ALTER TABLE oauth_refresh_token ADD COLUMN parent_hash TEXT;

-- +goose Down
ALTER TABLE oauth_refresh_token DROP COLUMN parent_hash;
