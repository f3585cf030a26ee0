package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/developer"
)

func TestPortalOperatorAdd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	h, err := database.Open(ctx, database.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := developer.New(ctx, h, developer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.SignUp(ctx, "op@example.org", "Op", "correct horse battery", ""); err != nil {
		t.Fatal(err)
	}
	_ = h.Close()
	var out, errb bytes.Buffer
	if code := Main([]string{"portal", "operator", "add", "--data-dir", dir, "OP@example.org"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "op@example.org is a portal operator") {
		t.Fatalf("out %q", out.String())
	}
	if code := Main([]string{"portal", "operator", "add", "--data-dir", dir, "nobody@example.org"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "no developer account") {
		t.Fatalf("unknown account: exit %d %q", code, errb.String())
	}
	h, _ = database.Open(ctx, database.Options{DataDir: dir})
	defer h.Close()
	svc, _ = developer.New(ctx, h, developer.Options{})
	d, _ := svc.DeveloperByEmail(ctx, "op@example.org")
	if !d.Operator {
		t.Fatal("not an operator")
	}
	if code := Main([]string{"portal", "operator", "remove", "--data-dir", dir, "op@example.org"}, nil, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if d, _ := svc.DeveloperByEmail(ctx, "op@example.org"); d.Operator {
		t.Fatal("still an operator")
	}
}
