package sandbox

import "github.com/lapis-health/lapis/internal/sandbox/dataset"

// Builtin is the sandbox dataset built into the binary (package
// internal/sandbox/dataset): its transaction Bundles and its patient and
// practitioner logins, and the registered test app (TestApp).
func Builtin() (Dataset, error) {
	bundles, err := dataset.Bundles()
	if err != nil {
		return Dataset{}, err
	}
	ds := Dataset{Bundles: bundles, App: TestApp()}
	for _, l := range dataset.Logins() {
		ds.Logins = append(ds.Logins, Login(l))
	}
	return ds, nil
}
