package validate

import (
	"sync"
	"testing"

	"github.com/lapis-health/lapis/internal/fhir/definitions"
)

var (
	valOnce sync.Once
	valVal  *Validator
	valErr  error
)

func testValidator(t testing.TB) *Validator {
	t.Helper()
	valOnce.Do(func() {
		reg, err := definitions.Load()
		if err != nil {
			valErr = err
			return
		}
		valVal = New(reg)
	})
	if valErr != nil {
		t.Fatal(valErr)
	}
	return valVal
}
