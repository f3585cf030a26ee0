package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

func bundleFiles(t testing.TB, dir []string, limit int) []string {
	files := shareddata.Glob(t, "*.json", dir...)
	if limit > 0 && len(files) > limit {
		files = files[:limit]
	}
	return files
}

// knownDataDefects lists issues in the shared test data that are genuine
// errors in the data (not validator bugs), by file and expression.
var knownDataDefects = map[string]map[string]string{
	// Period has "start" and "end"; "stop" is not an R4 element (the
	// reference server's source data has this typo).
	"uscore_bundle_patient_355.json": {
		"Observation.effectivePeriod.stop":                "structure",
		"Bundle.entry[266].resource.effectivePeriod.stop": "structure",
	},
}

func validateBundleFile(t *testing.T, v *Validator, file string) int {
	known := knownDataDefects[filepath.Base(file)]
	seen := map[string]bool{}
	report := func(where string, is Issue) {
		t.Helper()
		if code, ok := known[is.Expression]; ok && code == is.Code {
			seen[is.Expression] = true
			return
		}
		t.Errorf("%s %s: %s %s: %s", filepath.Base(file), where, is.Code, is.Expression, is.Message)
	}
	defer func() {
		for expr := range known {
			if !seen[expr] {
				t.Errorf("%s: expected known defect at %s was not reported", filepath.Base(file), expr)
			}
		}
	}()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bundle := decode(t, b)
	entries, _ := bundle["entry"].([]any)
	n := 0
	for i, e := range entries {
		res, ok := e.(map[string]any)["resource"].(map[string]any)
		if !ok {
			continue
		}
		n++
		for _, is := range v.Validate(res) {
			report(fmt.Sprintf("entry %d (%s/%v)", i, res["resourceType"], res["id"]), is)
		}
	}
	// The whole Bundle validates too (entries as Bundle.entry.resource).
	for _, is := range v.Validate(bundle) {
		report("(whole bundle)", is)
	}
	return n
}

func TestSyntheaBundles(t *testing.T) {
	v := testValidator(t)
	limit := 8
	if os.Getenv("LAPIS_ALL_DATA") != "" {
		limit = 0
	}
	total := 0
	for _, f := range bundleFiles(t, []string{"data", "synthea"}, limit) {
		total += validateBundleFile(t, v, f)
	}
	t.Logf("validated %d Synthea resources", total)
}

func TestUSCoreBundles(t *testing.T) {
	v := testValidator(t)
	total := 0
	for _, f := range bundleFiles(t, []string{"data", "uscore"}, 0) {
		total += validateBundleFile(t, v, f)
	}
	t.Logf("validated %d US Core resources", total)
}
