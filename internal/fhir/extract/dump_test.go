package extract

import (
	"fmt"
	"strings"

	"github.com/lapis-health/lapis/internal/store"
)

// dumpIndex renders index rows one per line, for test failures and logs.
func dumpIndex(x store.Index) string {
	var b strings.Builder
	for _, r := range x.Strings {
		fmt.Fprintf(&b, "string %s g%d %q %q\n", r.Param, r.Group, r.Norm, r.Exact)
	}
	for _, r := range x.Tokens {
		fmt.Fprintf(&b, "token %s g%d %s|%s %q\n", r.Param, r.Group, r.System, r.Code, r.Text)
	}
	for _, r := range x.References {
		fmt.Fprintf(&b, "reference %s g%d %s/%s %s\n", r.Param, r.Group, r.TargetType, r.TargetID, r.URL)
	}
	for _, r := range x.Dates {
		fmt.Fprintf(&b, "date %s g%d %d..%d\n", r.Param, r.Group, r.Lo, r.Hi)
	}
	for _, r := range x.Numbers {
		fmt.Fprintf(&b, "number %s g%d %g..%g\n", r.Param, r.Group, r.Lo, r.Hi)
	}
	for _, r := range x.Quantities {
		fmt.Fprintf(&b, "quantity %s g%d %g..%g %s|%s %q\n", r.Param, r.Group, r.Lo, r.Hi, r.System, r.Code, r.Unit)
	}
	for _, r := range x.URIs {
		fmt.Fprintf(&b, "uri %s g%d %s\n", r.Param, r.Group, r.URI)
	}
	return b.String()
}
