package validate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lapis-health/lapis/internal/testutil/shareddata"
)

func FuzzValidate(f *testing.F) {
	seeds := []string{
		`{}`, `null`, `[]`, `{"resourceType":"Patient"}`,
		obs(""), obs(`,"valueQuantity":{"value":1e400}`),
		`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"x"}]}],"_birthDate":{"extension":[{"url":"u","valueString":"x"}]}}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","contained":[{"resourceType":"Patient"}]}}]}`,
		`{"resourceType":"Questionnaire","item":[{"item":[{"item":[{"linkId":1}]}]}]}`,
		`{"resourceType":"Observation","valueString":"a","valueBoolean":true,"valueInteger":1,"subject":{"reference":"Foo/1"}}`,
		`{"resourceType":"Patient","_name":[null],"name":null,"text":{"div":7}}`,
	}
	if b, err := os.ReadFile(filepath.Join(shareddata.Root(), "..", "shared", "data", "uscore", "uscore_bundle_asserted-date.json")); err == nil {
		seeds = append(seeds, string(b))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	v := testValidator(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return
		}
		for _, is := range v.Validate(m) {
			if is.Severity != "error" || is.Code == "" || is.Message == "" || is.Expression == "" {
				t.Fatalf("malformed issue %+v", is)
			}
		}
	})
}
