package profile

import (
	"fmt"
	"sort"
	"strings"

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
// against the profiles of a Set per its mode; it implements the resource
// service's Validator. It is safe for concurrent use.
type Checker struct {
	base *validate.Validator
	set  *Set
	mode string
}

// NewChecker returns a Checker for mode (one of Modes).
func NewChecker(base *validate.Validator, set *Set, mode string) (*Checker, error) {
	switch mode {
	case ModeOff, ModeClaimed, ModeUSCore:
	default:
		return nil, fmt.Errorf("profile validation mode %q: want one of %s", mode, strings.Join(Modes, ", "))
	}
	if set == nil && mode != ModeOff {
		return nil, fmt.Errorf("profile validation: no profiles")
	}
	return &Checker{base: base, set: set, mode: mode}, nil
}

// Validate returns the structural issues of resource, and when there are
// none, the profile issues (as validate.Issue values whose message names
// the profile, the element and the rule).
func (c *Checker) Validate(resource map[string]any) []validate.Issue {
	if issues := c.base.Validate(resource); len(issues) > 0 || c.mode == ModeOff {
		return issues
	}
	typ, _ := resource["resourceType"].(string)
	var claimed []string
	meta, _ := resource["meta"].(map[string]any)
	ps, _ := meta["profile"].([]any)
	for _, p := range ps {
		if u, ok := p.(string); ok && c.set.Has(u) {
			claimed = append(claimed, u)
		}
	}
	var out []validate.Issue
	for _, u := range claimed {
		issues, err := c.set.Validate(resource, u)
		if err != nil {
			out = append(out, validate.Issue{Severity: "error", Code: validate.CodeInvalid, Expression: typ + ".meta.profile",
				Message: err.Error()})
			continue
		}
		out = append(out, convert(issues)...)
	}
	if len(claimed) > 0 || c.mode != ModeUSCore {
		return out
	}
	// us-core: conform to at least one profile of the type.
	candidates := c.set.Profiles(typ)
	if len(candidates) == 0 {
		return nil
	}
	sort.Strings(candidates)
	var best []Issue
	for _, u := range candidates {
		issues, _ := c.set.Validate(resource, u)
		if len(issues) == 0 {
			return nil
		}
		if best == nil || len(issues) < len(best) {
			best = issues
		}
	}
	res := convert(best)
	for i := range res {
		res[i].Message = fmt.Sprintf("conforms to no US Core %s profile of %s; closest: %s", c.set.Version(), typ, res[i].Message)
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
		}
		out = append(out, validate.Issue{Severity: "error", Code: code, Expression: is.Element,
			Message: fmt.Sprintf("profile %s, element %s, rule %s: %s", is.Profile, is.Element, is.Rule, is.Message)})
	}
	return out
}
