package validate

import (
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

// sharedValidator is the one Validator of the package's tests.
var sharedValidator = sync.OnceValues(func() (*Validator, error) {
	reg, err := definitions.Load()
	if err != nil {
		return nil, err
	}
	return New(reg), nil
})

func testValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := sharedValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
