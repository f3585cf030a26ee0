package profile

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lapis-health/lapis/internal/fhir/validate"
)

// Validation modes of a Checker.
const (
	// ModeOff: no profile validation.
	ModeOff = "off"
	// ModeClaimed: a resource must conform to every profile of the set it
	// claims in meta.profile (other profiles are ignored).
	ModeClaimed = "claimed"
	// ModeUSCore: as ModeClaimed, and a resource of a type the set has
	// profiles for that claims none of them must conform to at least one.
	ModeUSCore = "us-core"
)

// Modes lists the validation modes.
var Modes = []string{ModeOff, ModeClaimed, ModeUSCore}

// Checker validates resources structurally (package validate) and then
// against the profiles of a Set per its mode, or per the mode a request
// chose (WithMode) when that is stricter (or looser, with AllowLower); it
// implements the resource service's Validator and ContextValidator. It is
// safe for concurrent use.
type Checker struct {
	base       *validate.Validator
	mode       string
	allowLower bool
	set        func() (*Set, error)
}

// Options configures a Checker built by New.
type Options struct {
	// Mode is the server's validation mode (one of Modes).
	Mode string
	// Set holds the profiles.
	Set *Set
	// Load, when Set is nil, is called once, the first time a mode other
	// than off applies (a request may ask for one while Mode is off), so
	// that a server that validates nothing does not hold the profiles in
	// memory.
	Load func() (*Set, error)
	// AllowLower lets a request choose a looser mode than Mode (an
	// operator's choice, e.g. for a trusted bulk loader); without it a
	// looser request mode is overridden by Mode.
	AllowLower bool
}

// New returns a Checker configured by o.
func New(base *validate.Validator, o Options) (*Checker, error) {
	if rank(o.Mode) < 0 {
		return nil, fmt.Errorf("profile validation mode %q: want one of %s", o.Mode, strings.Join(Modes, ", "))
	}
	c := &Checker{base: base, mode: o.Mode, allowLower: o.AllowLower}
	switch {
	case o.Set != nil:
		set := o.Set
		c.set = func() (*Set, error) { return set, nil }
	case o.Load != nil:
		c.set = sync.OnceValues(o.Load)
	default:
		if o.Mode != ModeOff {
			return nil, fmt.Errorf("profile validation: no profiles")
		}
		c.set = func() (*Set, error) { return nil, fmt.Errorf("profile validation: no profiles") }
	}
	return c, nil
}

// NewChecker returns a Checker for mode (one of Modes) over set.
func NewChecker(base *validate.Validator, set *Set, mode string) (*Checker, error) {
	return New(base, Options{Mode: mode, Set: set})
}

// Validate returns the issues of resource under the Checker's own mode
// (see ValidateContext).
func (c *Checker) Validate(resource map[string]any) []validate.Issue {
	return c.validate(c.mode, resource)
}

// ValidateContext returns the structural issues of resource, and when
// there are none, the profile issues (as validate.Issue values whose
// message names the profile, the element and the rule), under the mode
// the request chose in ctx (WithMode) if it is stricter than the
// Checker's, or looser and the Checker allows that; else the Checker's.
func (c *Checker) ValidateContext(ctx context.Context, resource map[string]any) []validate.Issue {
	return c.validate(c.Effective(ModeFrom(ctx)), resource)
}

// Effective returns the mode that applies to a request that asked for
// requested ("" = nothing asked).
func (c *Checker) Effective(requested string) string {
	r := rank(requested)
	if r < 0 || (r < rank(c.mode) && !c.allowLower) {
		return c.mode
	}
	return requested
}

func (c *Checker) validate(mode string, resource map[string]any) []validate.Issue {
	if issues := c.base.Validate(resource); len(issues) > 0 || mode == ModeOff {
		return issues
	}
	typ, _ := resource["resourceType"].(string)
	set, err := c.set()
	if err != nil {
		return []validate.Issue{{Severity: "error", Code: "not-supported", Expression: typ,
			Message: "profile validation is not available on this server"}}
	}
	var claimed []string
	meta, _ := resource["meta"].(map[string]any)
	ps, _ := meta["profile"].([]any)
	for _, p := range ps {
		if u, ok := p.(string); ok && set.Has(u) {
			claimed = append(claimed, u)
		}
	}
	var out []validate.Issue
	for _, u := range claimed {
		issues, err := set.Validate(resource, u)
		if err != nil {
			out = append(out, validate.Issue{Severity: "error", Code: validate.CodeInvalid, Expression: typ + ".meta.profile",
				Message: err.Error()})
			continue
		}
		out = append(out, convert(issues)...)
	}
	if len(claimed) > 0 || mode != ModeUSCore {
		return out
	}
	// us-core: conform to at least one profile of the type.
	candidates := set.Profiles(typ)
	if len(candidates) == 0 {
		return nil
	}
	sort.Strings(candidates)
	var best []Issue
	for _, u := range candidates {
		issues, _ := set.Validate(resource, u)
		if len(issues) == 0 {
			return nil
		}
		if best == nil || len(issues) < len(best) {
			best = issues
		}
	}
	res := convert(best)
	for i := range res {
		res[i].Message = fmt.Sprintf("conforms to no US Core %s profile of %s; closest: %s", set.Version(), typ, res[i].Message)
	}
	return res
}

// convert turns profile issues into validate issues.
func convert(issues []Issue) []validate.Issue {
	out := make([]validate.Issue, 0, len(issues))
	for _, is := range issues {
		code := validate.CodeInvalid
		switch is.Rule {
		case "cardinality", "slice":
			code = validate.CodeStructure
		case "binding":
			code = validate.CodeCodeInvalid
		case "fixed", "pattern":
			code = validate.CodeValue
		case "invariant":
			code = "invariant"
		}
		out = append(out, validate.Issue{Severity: "error", Code: code, Expression: is.Element,
			Message: fmt.Sprintf("profile %s, element %s, rule %s: %s", is.Profile, is.Element, is.Rule, is.Message)})
	}
	return out
}
