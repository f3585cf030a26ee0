package archtest

import (
	"bytes"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/lapis-health/lapis/"

// edge are the packages a request meets before authorization: the gateway
// policies, authentication and the audit trail they record to.
var edge = []string{"internal/netpolicy", "internal/ratelimit", "internal/authn", "internal/audit"}

// aboveEdge are the packages edge must not reach: the FHIR store's
// implementations, the FHIR layers, authorization and the authorization
// server. A package matches its root and everything under it.
var aboveEdge = []string{
	"internal/store/", // the contract internal/store itself is a leaf (TestLeafPackages)
	"internal/resource",
	"internal/fhir/validate",
	"internal/search",
	"internal/fhirapi",
	"internal/access",
	"internal/oauth", // but internal/oauth/token, a leaf
	"internal/authorize",
	"internal/admin",
	"internal/adminapi",
	"internal/importer",
	"internal/server",
	"internal/app",
	"internal/cli",
}

// allowed are exceptions to aboveEdge: leaves checked by TestLeafPackages.
var allowed = []string{"internal/oauth/token"}

// leaves import no other package of the module.
var leaves = []string{"internal/principal", "internal/httpx", "internal/randtoken", "internal/fhir/interaction", "internal/oauth/token", "internal/database", "internal/store", "internal/fhir/fhirid", "internal/parallel", "internal/oauth/scope"}

// belowOAuth are the packages the token endpoint's grants and their
// shared types must not reach: the oauth core (not its subpackages) and
// everything above it.
var belowOAuth = []string{"internal/oauth$", "internal/authorize", "internal/admin", "internal/adminapi", "internal/fhirapi", "internal/app", "internal/server"}

// portalDomain are the packages the portal's domain packages must not
// reach.
var portalDomain = []string{"internal/oauth$", "internal/authorize", "internal/admin", "internal/adminapi", "internal/fhirapi", "internal/app",
	"internal/server", "internal/cli", "internal/store/", "internal/resource"}

// TestDependencyDirections runs go list -deps on the gateway,
// authentication and audit packages, and on the storage below the FHIR
// store, and fails if they reach a package above them; the message shows
// the import chain.
func TestDependencyDirections(t *testing.T) {
	rules := map[string][]string{
		// The authorization database and the database helpers sit beside
		// the FHIR store, not on it.
		"internal/authdb":   {"internal/store", "internal/resource", "internal/fhir/validate", "internal/access", "internal/oauth"},
		"internal/database": {"internal/store", "internal/resource", "internal/fhir/validate"},
		// The page kit knows nothing of OAuth or FHIR: pages build on it.
		"internal/web": {"internal/oauth", "internal/authorize", "internal/adminapi", "internal/store/", "internal/resource", "internal/fhirapi", "internal/access"},
		// The grants and what they share with the core sit below the
		// oauth core, which registers them ("$": that package only).
		"internal/oauth/grant":    belowOAuth,
		"internal/oauth/tokenreq": belowOAuth,
		// The portal's domain packages (production access requests,
		// webhooks) sit below every front end and beside the FHIR store;
		// the admin service reaches them only through hooks.
		"internal/review":  portalDomain,
		"internal/webhook": portalDomain,
	}
	for _, p := range edge {
		rules[p] = aboveEdge
	}
	pkgs := make([]string, 0, len(rules))
	for p := range rules {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	g := importGraph(t, pkgs)
	for _, p := range pkgs {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			reach := g.reach(p)
			for _, dep := range slices.Sorted(maps.Keys(reach)) {
				chain := reach[dep]
				if slices.Contains(allowed, dep) {
					continue
				}
				for _, root := range rules[p] {
					if under(dep, root) {
						t.Errorf("%s reaches %s: %s", p, dep, strings.Join(chain, " -> "))
						break
					}
				}
			}
		})
	}
}

// TestLeafPackages checks that the shared leaves (who is calling, the
// access-token claims, the database names, the store contract, FHIR ids) import
// nothing of the module, so every layer may use them.
func TestLeafPackages(t *testing.T) {
	g := importGraph(t, leaves)
	for _, p := range leaves {
		reach := g.reach(p)
		for _, dep := range slices.Sorted(maps.Keys(reach)) {
			t.Errorf("leaf %s imports %s: %s", p, dep, strings.Join(reach[dep], " -> "))
		}
	}
}

// under reports whether pkg is root or below it; a root ending in "/"
// matches only the packages below it, one ending in "$" only root itself.
func under(pkg, root string) bool {
	if r, ok := strings.CutSuffix(root, "$"); ok {
		return pkg == r
	}
	if r, ok := strings.CutSuffix(root, "/"); ok {
		return strings.HasPrefix(pkg, r+"/")
	}
	return pkg == root || strings.HasPrefix(pkg, root+"/")
}

// graph maps each module package (relative to the module) to its direct
// imports within the module.
type graph map[string][]string

// importGraph runs go list -deps on pkgs and returns the module part of
// the import graph they reach.
func importGraph(t *testing.T, pkgs []string) graph {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}
	for _, p := range pkgs {
		args = append(args, module+p)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goBin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := graph{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		var imps []string
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				imps = append(imps, rel)
			}
		}
		g[strings.TrimPrefix(f[0], module)] = imps
	}
	for _, p := range pkgs {
		if _, ok := g[p]; !ok {
			t.Fatalf("go list did not list %s", p)
		}
	}
	return g
}

// reach returns every module package p depends on (not p itself), each
// with a shortest import chain from p.
func (g graph) reach(p string) map[string][]string {
	chains := map[string][]string{p: {p}}
	queue := []string{p}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range g[cur] {
			if _, seen := chains[imp]; seen {
				continue
			}
			chains[imp] = append(slices.Clip(chains[cur]), imp)
			queue = append(queue, imp)
		}
	}
	delete(chains, p)
	return chains
}
