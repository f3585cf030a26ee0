package profile

import (
	"context"
	"fmt"
	"strings"
)

// Header is the request header by which a write asks for its own profile
// validation mode ("X-Lapis-Profile-Validation: us-core"): one of Modes.
// It applies to a create, an update, a patch, and to every entry of a
// batch or transaction. A request may make validation stricter than the
// server's mode, never looser unless the Checker allows it (AllowLower).
const Header = "X-Lapis-Profile-Validation"

type modeKey struct{}

// WithMode returns ctx carrying a request's validation mode (one of
// Modes, as returned by ParseMode).
func WithMode(ctx context.Context, mode string) context.Context {
	return context.WithValue(ctx, modeKey{}, mode)
}

// ModeFrom returns the request's validation mode in ctx, or "" when the
// request chose none.
func ModeFrom(ctx context.Context) string {
	m, _ := ctx.Value(modeKey{}).(string)
	return m
}

// ParseMode parses the value of Header (case-insensitive, spaces
// trimmed); the error says what is accepted.
func ParseMode(v string) (string, error) {
	m := strings.ToLower(strings.TrimSpace(v))
	if rank(m) < 0 {
		return "", fmt.Errorf("%s %q: want one of %s", Header, v, strings.Join(Modes, ", "))
	}
	return m, nil
}

// rank orders the modes from the loosest (off) to the strictest
// (us-core); -1 for an unknown mode.
func rank(mode string) int {
	switch mode {
	case ModeOff:
		return 0
	case ModeClaimed:
		return 1
	case ModeUSCore:
		return 2
	}
	return -1
}
