package extract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

// FuzzExtract feeds arbitrary JSON to Extract: it must never panic (not
// even a panic recovered internally) and never fail for a known type.
func FuzzExtract(f *testing.F) {
	newTestExtractor(f)
	e, err := New(testReg, testBase) // our own, with the panic hook set
	if err != nil {
		f.Fatal(err)
	}
	types := testReg.ResourceTypes()
	f.Add([]byte(`{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}]},"valueQuantity":{"value":1}}`), uint8(0))
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["a",null,3]}],"birthDate":"2020-02-30","deceasedBoolean":"x"}`), uint8(0))
	f.Add([]byte(`{"component":[{"code":1,"valueQuantity":[]}],"subject":{"reference":"Patient/"}}`), uint8(120))
	f.Add([]byte(`{"period":{"start":"2020","end":"2019"},"meta":{"tag":"x","profile":[1]}}`), uint8(50))
	if file := filepath.Join(append([]string{shareddata.Root(), "..", "shared"}, append(uscoreDir, "uscore_bundle_patient_85.json")...)...); fileExists(file) {
		for i, r := range loadBundle(f, file) {
			if i%20 == 0 {
				b, _ := json.Marshal(r)
				f.Add(b, uint8(0))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, typ uint8) {
		e.onPanic = func(code string, r any) { panic(fmt.Sprintf("param %s: %v", code, r)) }
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) != nil || m == nil {
			return
		}
		if rt, ok := m["resourceType"].(string); !ok || e.plans[rt] == nil {
			m["resourceType"] = types[int(typ)%len(types)]
		}
		if _, err := e.Extract(m); err != nil {
			t.Fatalf("Extract: %v", err)
		}
	})
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
