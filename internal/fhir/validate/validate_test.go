package validate

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type want struct {
	code string
	expr string
	msg  string // substring
}

func check(t *testing.T, name, doc string, wants ...want) {
	t.Helper()
	v := testValidator(t)
	res := decode(t, []byte(doc))
	issues := v.Validate(res)
	var got []string
	for _, is := range issues {
		if is.Severity != "error" {
			t.Errorf("%s: severity %q", name, is.Severity)
		}
		if is.Message == "" || strings.Contains(is.Message, "%!") {
			t.Errorf("%s: bad message %q", name, is.Message)
		}
		got = append(got, fmt.Sprintf("%s %s: %s", is.Code, is.Expression, is.Message))
	}
	if len(wants) == 0 {
		if len(issues) > 0 {
			t.Errorf("%s: want valid, got\n  %s", name, strings.Join(got, "\n  "))
		}
		return
	}
	if len(issues) != len(wants) {
		t.Errorf("%s: want %d issues, got %d:\n  %s", name, len(wants), len(issues), strings.Join(got, "\n  "))
		return
	}
	for i, w := range wants {
		is := issues[i]
		if is.Code != w.code || is.Expression != w.expr || !strings.Contains(is.Message, w.msg) {
			t.Errorf("%s: issue %d = %s; want %s %s: ...%s...", name, i, got[i], w.code, w.expr, w.msg)
		}
	}
}

const obsTmpl = `{"resourceType":"Observation","id":"obs-1","status":"final",
 "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
 "subject":{"reference":"Patient/p1"}%s}`

func obs(extra string) string { return fmt.Sprintf(obsTmpl, extra) }

func TestValidResources(t *testing.T) {
	check(t, "minimal observation", obs(""))
	check(t, "observation with quantity", obs(`,"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},
	  "effectiveDateTime":"2020-01-02T03:04:05+01:00","issued":"2020-01-02T03:04:05.123Z",
	  "component":[{"code":{"text":"x"},"valueString":"y"}],
	  "meta":{"versionId":"1","lastUpdated":"2020-01-01T00:00:00Z","tag":[{"system":"s","code":"c"}]},
	  "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">hi</div>"},
	  "extension":[{"url":"http://example.org/ext","valueBoolean":true}],
	  "modifierExtension":[{"url":"http://example.org/mod","extension":[{"url":"a","valueInteger":-3}]}]`))
	check(t, "patient", `{"resourceType":"Patient","id":"p.1-A","active":true,"gender":"female","birthDate":"1970-02",
	  "name":[{"family":"Doe","given":["Jane","Q"]}],"deceasedBoolean":false,"multipleBirthInteger":2,
	  "telecom":[{"system":"phone","value":"555"}],"contact":[{"name":{"text":"Mum"}}],
	  "managingOrganization":{"reference":"Organization/o1"},
	  "generalPractitioner":[{"reference":"urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"},{"reference":"http://example.org/fhir/Practitioner/1"},{"reference":"PractitionerRole/r1/_history/2"},{"display":"Dr. Who"},{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999"}]}`)
	check(t, "questionnaire nesting", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string","item":[{"linkId":"1.1.1","type":"display","text":"x"}]}]}]}`)
	check(t, "bundle with resources", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d","resource":{"resourceType":"Patient","id":"a"},"request":{"method":"POST","url":"Patient"}}]}`)
	check(t, "binary base64", `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8gd29y bGQ="}`)
	check(t, "parameters", `{"resourceType":"Parameters","parameter":[{"name":"a","valueDecimal":1.50},{"name":"b","resource":{"resourceType":"Patient"}},{"name":"c","part":[{"name":"d","valueUri":"urn:x"}]}]}`)
	check(t, "time/oid/uuid/positiveInt/unsignedInt/base64", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueTime":"23:59:60.5",
	  "identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.840.10008"}],"sampledData":null}`[:0]+obs(`,"valueTime":"23:59:60.5"`))
	check(t, "number types", `{"resourceType":"ImmunizationRecommendation","patient":{"reference":"Patient/1"},"date":"2020","recommendation":[{"vaccineCode":[{"text":"x"}],"forecastStatus":{"text":"due"},"doseNumberPositiveInt":1,"seriesDosesString":"3"}]}`)
	check(t, "extension-only primitive", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`)
	check(t, "primitive with id and extension", `{"resourceType":"Patient","birthDate":"2000-01-01","_birthDate":{"id":"bd","extension":[{"url":"http://example.org","valueDateTime":"2000-01-01T10:00:00Z"}]}}`)
	check(t, "aligned primitive arrays", `{"resourceType":"Patient","name":[{"given":["A",null,"C"],"_given":[null,{"extension":[{"url":"http://x","valueString":"B"}]},null]}]}`)
	check(t, "contained", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#p"},"contained":[{"resourceType":"Patient","id":"p"}]}`)
	check(t, "reference #", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#"}}`)
	check(t, "oid reference", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:oid:1.2.3"}}`)
	check(t, "decimal exponent", obs(`,"valueQuantity":{"value":1.5e3}`))
	check(t, "canonical and url", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"meta":{"profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns|4.0.1"],"source":"urn:x"}}`)
	check(t, "uuid identifier", `{"resourceType":"Patient","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}]}`)
	check(t, "resource reference to any", `{"resourceType":"Provenance","target":[{"reference":"Observation/1"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"Practitioner/1"}}]}`)
}

func TestResourceType(t *testing.T) {
	check(t, "missing", `{"id":"x"}`, want{CodeRequired, "Resource", "resourceType"})
	check(t, "unknown", `{"resourceType":"Foo"}`, want{CodeInvalid, "Resource", `Unknown resource type "Foo"`})
	check(t, "abstract", `{"resourceType":"DomainResource"}`, want{CodeInvalid, "Resource", "Unknown resource type"})
	check(t, "not string", `{"resourceType":7}`, want{CodeStructure, "Resource", "must be a string"})
	check(t, "nested unknown", obs(`,"contained":[{"resourceType":"Nope","id":"x"}]`), want{CodeInvalid, "Observation.contained[0]", `Unknown resource type "Nope"`})
	check(t, "nested missing", obs(`,"contained":[{"id":"x"}]`), want{CodeRequired, "Observation.contained[0]", "resourceType"})
	check(t, "resourceType inside datatype", obs(`,"valueQuantity":{"resourceType":"Quantity","value":1}`), want{CodeStructure, "Observation.valueQuantity.resourceType", "Unknown element"})
}

func TestUnknownElements(t *testing.T) {
	check(t, "top level", obs(`,"foo":1`), want{CodeStructure, "Observation.foo", `Unknown element "foo"`})
	check(t, "nested", obs(`,"component":[{"code":{"text":"a"},"bar":"x"}]`), want{CodeStructure, "Observation.component[0].bar", `Unknown element "bar"`})
	check(t, "in datatype", `{"resourceType":"Patient","name":[{"family":"x"},{"family":"y","surname":"z"}]}`, want{CodeStructure, "Patient.name[1].surname", "Unknown element"})
	check(t, "medplum meta", obs(`,"meta":{"project":"x"}`), want{CodeStructure, "Observation.meta.project", "Unknown element"})
	check(t, "bundle-only field", obs(`,"fullUrl":"x"`), want{CodeStructure, "Observation.fullUrl", "Unknown element"})
	check(t, "underscore on complex", obs(`,"_code":{"id":"x"}`), want{CodeStructure, "Observation._code", "not primitive"})
	check(t, "underscore unknown", obs(`,"_foo":{"id":"x"}`), want{CodeStructure, "Observation._foo", "Unknown element"})
	check(t, "text on Bundle", `{"resourceType":"Bundle","type":"collection","text":{"status":"generated","div":"<div></div>"}}`, want{CodeStructure, "Bundle.text", "Unknown element"})
}

func TestCardinality(t *testing.T) {
	check(t, "missing status", `{"resourceType":"Observation","code":{"text":"x"}}`, want{CodeRequired, "Observation.status", `Missing required element "status"`})
	check(t, "missing two", `{"resourceType":"Observation"}`,
		want{CodeRequired, "Observation.code", "code"}, want{CodeRequired, "Observation.status", "status"})
	check(t, "missing in backbone", obs(`,"component":[{"valueString":"x"}]`), want{CodeRequired, "Observation.component[0].code", "Missing required"})
	check(t, "missing choice", `{"resourceType":"Extension"}`[:0]+obs(`,"extension":[{"valueString":"x"}]`), want{CodeRequired, "Observation.extension[0].url", "url"})
	check(t, "required choice", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"}}]}`)
	check(t, "required choice missing", `{"resourceType":"MedicationAdministration","status":"completed","subject":{"reference":"Patient/1"},"effectiveDateTime":"2020"}`,
		want{CodeRequired, "MedicationAdministration.medication[x]", `"medication[x]"`})
	check(t, "array for single", obs(`,"issued":["2020-01-01T00:00:00Z"]`), want{CodeStructure, "Observation.issued", "must be a single value, not an array"})
	check(t, "single for array", obs(`,"category":{"text":"x"}`), want{CodeStructure, "Observation.category", `"category" must be an array`})
	check(t, "primitive single for array", `{"resourceType":"Patient","name":[{"given":"Jane"}]}`, want{CodeStructure, "Patient.name[0].given", "must be an array"})
	check(t, "required satisfied by extension", `{"resourceType":"Observation","_status":{"extension":[{"url":"http://x","valueString":"y"}]},"code":{"text":"x"}}`)
}

func TestChoiceTypes(t *testing.T) {
	check(t, "bad variant", obs(`,"valueFoo":1`), want{CodeStructure, "Observation.valueFoo", "value[x] must be one of valueQuantity, valueCodeableConcept"})
	check(t, "wrong case", obs(`,"valuequantity":{"value":1}`), want{CodeStructure, "Observation.valuequantity", "Unknown element"})
	check(t, "bare name", obs(`,"value":1`), want{CodeStructure, "Observation.value", "Unknown element"})
	check(t, "two variants", obs(`,"valueString":"a","valueBoolean":true`), want{CodeStructure, "Observation.value[x]", "Only one of value[x] may be present (found valueBoolean and valueString)"})
	check(t, "three variants one issue", obs(`,"valueString":"a","valueBoolean":true,"valueInteger":1`), want{CodeStructure, "Observation.value[x]", "valueBoolean and valueInteger and valueString"})
	check(t, "extension value variants", obs(`,"extension":[{"url":"u","valueString":"a","valueCode":"b"}]`), want{CodeStructure, "Observation.extension[0].value[x]", "Only one"})
	check(t, "variant type checked", obs(`,"valueBoolean":"true"`), want{CodeValue, "Observation.valueBoolean", "Expected a JSON boolean"})
	check(t, "variant complex checked", obs(`,"valuePeriod":{"begin":"2020"}`), want{CodeStructure, "Observation.valuePeriod.begin", "Unknown element"})
}

func TestPrimitives(t *testing.T) {
	type pc struct {
		name, field, value string
		ok                 bool
	}
	// Patient fields of various primitive types.
	cases := []pc{
		{"date ok year", "birthDate", `"1999"`, true},
		{"date ok full", "birthDate", `"1999-12-31"`, true},
		{"date bad month", "birthDate", `"1999-13-01"`, false},
		{"date with time", "birthDate", `"1999-01-01T00:00:00Z"`, false},
		{"date number", "birthDate", `1999`, false},
		{"date empty", "birthDate", `""`, false},
		{"boolean ok", "active", `false`, true},
		{"boolean string", "active", `"true"`, false},
		{"boolean number", "active", `1`, false},
		{"dateTime ok", "deceasedDateTime", `"2020-02-03T04:05:06.789-05:00"`, true},
		{"dateTime date only", "deceasedDateTime", `"2020-02-03"`, true},
		{"dateTime no tz", "deceasedDateTime", `"2020-02-03T04:05:06"`, false},
		{"dateTime no seconds", "deceasedDateTime", `"2020-02-03T04:05Z"`, false},
		{"integer ok", "multipleBirthInteger", `3`, true},
		{"integer negative", "multipleBirthInteger", `-3`, true},
		{"integer decimal", "multipleBirthInteger", `3.0`, false},
		{"integer exponent", "multipleBirthInteger", `3e2`, false},
		{"integer overflow", "multipleBirthInteger", `2147483648`, false},
		{"integer string", "multipleBirthInteger", `"3"`, false},
		{"id ok", "id", `"abc-DEF.123"`, true},
		{"id underscore", "id", `"abc_def"`, false},
		{"id too long", "id", `"` + strings.Repeat("a", 65) + `"`, false},
		{"id 64", "id", `"` + strings.Repeat("a", 64) + `"`, true},
		{"id number", "id", `12`, false},
		{"uri ok", "implicitRules", `"http://example.org/rules"`, true},
		{"uri space", "implicitRules", `"http://example.org/a b"`, false},
		{"code ok", "language", `"en-US"`, true},
		{"code inner space", "language", `"a b"`, true},
		{"code leading space", "language", `" en"`, false},
		{"code double space", "language", `"a  b"`, false},
	}
	for _, c := range cases {
		doc := fmt.Sprintf(`{"resourceType":"Patient",%q:%s}`, c.field, c.value)
		if c.ok {
			check(t, c.name, doc)
		} else {
			check(t, c.name, doc, want{CodeValue, "Patient." + c.field, ""})
		}
	}
	check(t, "string empty", `{"resourceType":"Patient","name":[{"family":""}]}`, want{CodeValue, "Patient.name[0].family", "Empty strings are not allowed"})
	check(t, "string whitespace ok", `{"resourceType":"Patient","name":[{"family":" Doe "}]}`)
	check(t, "string form feed", `{"resourceType":"Patient","name":[{"family":"a\fb"}]}`, want{CodeValue, "Patient.name[0].family", "Invalid string"})
	check(t, "string number", `{"resourceType":"Patient","name":[{"family":5}]}`, want{CodeValue, "Patient.name[0].family", "Expected a JSON string (string), found a number"})
	check(t, "array item bad", `{"resourceType":"Patient","name":[{"given":["a",""]}]}`, want{CodeValue, "Patient.name[0].given[1]", "Empty strings"})
	check(t, "markdown", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"note":[{"text":""}]}`, want{CodeValue, "Observation.note[0].text", "Empty"})
	check(t, "decimal ok", obs(`,"valueQuantity":{"value":-0.5}`))
	check(t, "decimal string", obs(`,"valueQuantity":{"value":"0.5"}`), want{CodeValue, "Observation.valueQuantity.value", "Expected a JSON number (decimal)"})
	check(t, "instant ok", obs(`,"issued":"2020-01-01T00:00:00.1+14:00"`))
	check(t, "instant no time", obs(`,"issued":"2020-01-01"`), want{CodeValue, "Observation.issued", "Invalid instant"})
	check(t, "time ok", obs(`,"valueTime":"12:00:00"`))
	check(t, "time bad", obs(`,"valueTime":"24:00:00"`), want{CodeValue, "Observation.valueTime", "Invalid time"})
	check(t, "positiveInt zero", `{"resourceType":"ImmunizationRecommendation","patient":{"reference":"Patient/1"},"date":"2020","recommendation":[{"vaccineCode":[{"text":"x"}],"forecastStatus":{"text":"due"},"doseNumberPositiveInt":0}]}`,
		want{CodeValue, "ImmunizationRecommendation.recommendation[0].doseNumberPositiveInt", "between 1 and"})
	check(t, "unsignedInt negative", `{"resourceType":"Attachment"}`[:0]+obs(`,"extension":[{"url":"u","valueAttachment":{"size":-1}}]`), want{CodeValue, "Observation.extension[0].valueAttachment.size", "between 0 and"})
	check(t, "unsignedInt ok", obs(`,"extension":[{"url":"u","valueAttachment":{"size":0}}]`))
	check(t, "base64 ok", obs(`,"extension":[{"url":"u","valueAttachment":{"data":"QUJD\nREVG"}}]`))
	check(t, "base64 bad", obs(`,"extension":[{"url":"u","valueAttachment":{"data":"QUJ"}}]`), want{CodeValue, "Observation.extension[0].valueAttachment.data", "Invalid base64Binary"})
	check(t, "base64 bad char", obs(`,"extension":[{"url":"u","valueAttachment":{"data":"QU*D"}}]`), want{CodeValue, "Observation.extension[0].valueAttachment.data", "base64"})
	check(t, "url ok", obs(`,"extension":[{"url":"u","valueAttachment":{"url":"http://x/y"}}]`))
	check(t, "oid bad", `{"resourceType":"Patient","extension":[{"url":"u","valueOid":"1.2.3"}]}`, want{CodeValue, "Patient.extension[0].valueOid", "Invalid oid"})
	check(t, "oid ok", `{"resourceType":"Patient","extension":[{"url":"u","valueOid":"urn:oid:1.2.3"}]}`)
	check(t, "uuid bad", `{"resourceType":"Patient","extension":[{"url":"u","valueUuid":"urn:uuid:ABC"}]}`, want{CodeValue, "Patient.extension[0].valueUuid", "Invalid uuid"})
	check(t, "uuid ok", `{"resourceType":"Patient","extension":[{"url":"u","valueUuid":"urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}]}`)
	check(t, "canonical bad", `{"resourceType":"Patient","meta":{"profile":["http://x y"]}}`, want{CodeValue, "Patient.meta.profile[0]", "Invalid canonical"})
	check(t, "long string message truncated", `{"resourceType":"Patient","birthDate":"`+strings.Repeat("9", 200)+`"}`, want{CodeValue, "Patient.birthDate", "..."})
	check(t, "float64 accepted", obs(`,"valueInteger":3`))
}

func TestFloat64Input(t *testing.T) {
	v := testValidator(t)
	var m map[string]any
	if err := json.Unmarshal([]byte(obs(`,"valueQuantity":{"value":1.5},"component":[{"code":{"text":"x"},"valueInteger":2}]`)), &m); err != nil {
		t.Fatal(err)
	}
	if is := v.Validate(m); len(is) != 0 {
		t.Errorf("float64 input: %+v", is)
	}
	if err := json.Unmarshal([]byte(obs(`,"component":[{"code":{"text":"x"},"valueInteger":2.5}]`)), &m); err != nil {
		t.Fatal(err)
	}
	if is := v.Validate(m); len(is) != 1 || is[0].Code != CodeValue {
		t.Errorf("float64 fractional integer: %+v", is)
	}
}

func TestCalendarDates(t *testing.T) {
	check(t, "leap day", `{"resourceType":"Patient","birthDate":"2020-02-29"}`)
	check(t, "not a leap year", `{"resourceType":"Patient","birthDate":"2021-02-29"}`, want{CodeValue, "Patient.birthDate", ""})
	check(t, "april 31", `{"resourceType":"Patient","deceasedDateTime":"2020-04-31T10:00:00Z"}`, want{CodeValue, "Patient.deceasedDateTime", ""})
}

// TestIntegerMinusZero: R4 integer is -?([0]|([1-9][0-9]*)), so "-0" is an
// integer; unsignedInt ([0]|([1-9][0-9]*)) and positiveInt ([1-9][0-9]*)
// have no sign.
func TestIntegerMinusZero(t *testing.T) {
	check(t, "integer -0", `{"resourceType":"Patient","multipleBirthInteger":-0}`)
	check(t, "valueInteger -0", obs(`,"valueInteger":-0`))
	check(t, "integer -0.0", `{"resourceType":"Patient","multipleBirthInteger":-0.0}`, want{CodeValue, "Patient.multipleBirthInteger", "whole number"})
	check(t, "unsignedInt -0", obs(`,"extension":[{"url":"u","valueAttachment":{"size":-0}}]`),
		want{CodeValue, "Observation.extension[0].valueAttachment.size", "without sign"})
	check(t, "valueUnsignedInt -0", obs(`,"extension":[{"url":"u","valueUnsignedInt":-0}]`),
		want{CodeValue, "Observation.extension[0].valueUnsignedInt", "without sign"})
	check(t, "valuePositiveInt -0", obs(`,"extension":[{"url":"u","valuePositiveInt":-0}]`),
		want{CodeValue, "Observation.extension[0].valuePositiveInt", "between 1 and"})
	check(t, "valuePositiveInt 1", obs(`,"extension":[{"url":"u","valuePositiveInt":1}]`))
	check(t, "valueUnsignedInt 0", obs(`,"extension":[{"url":"u","valueUnsignedInt":0}]`))
	// Decoded without UseNumber, -0 is a float64 with the sign bit.
	v := testValidator(t)
	for _, c := range []struct {
		doc string
		ok  bool
	}{
		{`{"resourceType":"Patient","multipleBirthInteger":-0}`, true},
		{`{"resourceType":"Patient","extension":[{"url":"u","valueUnsignedInt":-0}]}`, false},
		{`{"resourceType":"Patient","extension":[{"url":"u","valueUnsignedInt":0}]}`, true},
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(c.doc), &m); err != nil {
			t.Fatal(err)
		}
		if is := v.Validate(m); (len(is) == 0) != c.ok {
			t.Errorf("float64 %s: %+v", c.doc, is)
		}
	}
}

func TestPrimitiveExtensions(t *testing.T) {
	check(t, "ext not object", `{"resourceType":"Patient","birthDate":"2000","_birthDate":"x"}`, want{CodeStructure, "Patient.birthDate", `"_birthDate" must contain objects`})
	check(t, "ext empty", `{"resourceType":"Patient","birthDate":"2000","_birthDate":{}}`, want{CodeStructure, "Patient.birthDate", "Empty objects"})
	check(t, "ext unknown child", `{"resourceType":"Patient","_birthDate":{"value":"2000"}}`, want{CodeStructure, "Patient.birthDate.value", "Unknown element"})
	check(t, "ext bad extension", `{"resourceType":"Patient","_birthDate":{"extension":[{"valueString":"x"}]}}`, want{CodeRequired, "Patient.birthDate.extension[0].url", "Missing required"})
	check(t, "ext array for single", `{"resourceType":"Patient","_birthDate":[{"id":"a"}]}`, want{CodeStructure, "Patient.birthDate", "not an array"})
	check(t, "ext single for array", `{"resourceType":"Patient","name":[{"given":["a"],"_given":{"id":"a"}}]}`, want{CodeStructure, "Patient.name[0].given", `"_given" must be an array`})
	check(t, "length mismatch", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[{"id":"x"}]}]}`, want{CodeStructure, "Patient.name[0].given", "same length"})
	check(t, "null without ext", `{"resourceType":"Patient","name":[{"given":["a",null]}]}`, want{CodeStructure, "Patient.name[0].given[1]", "null is not allowed"})
	check(t, "null both", `{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,null]}]}`, want{CodeStructure, "Patient.name[0].given[1]", "null is not allowed"})
	check(t, "ext only nulls", `{"resourceType":"Patient","name":[{"_given":[null]}]}`, want{CodeStructure, "Patient.name[0].given[0]", "null"})
	check(t, "ext only array ok", `{"resourceType":"Patient","name":[{"_given":[{"id":"a"}]}]}`)
	check(t, "ext null single", `{"resourceType":"Patient","_birthDate":null}`, want{CodeStructure, "Patient.birthDate", "null"})
	check(t, "ext on choice", obs(`,"valueString":"x","_valueString":{"id":"v"}`))
	check(t, "ext on div", `{"resourceType":"Patient","text":{"status":"generated","div":"<div>x</div>","_div":{"id":"x"}}}`, want{CodeStructure, "Patient.text._div", "Unknown element"})
}

func TestNullsAndEmpties(t *testing.T) {
	check(t, "null top", obs(`,"issued":null`), want{CodeStructure, "Observation.issued", "null is not allowed"})
	check(t, "null complex", obs(`,"valueQuantity":null`), want{CodeStructure, "Observation.valueQuantity", "null is not allowed"})
	check(t, "null array", obs(`,"category":null`), want{CodeStructure, "Observation.category", "null is not allowed"})
	check(t, "null in array", obs(`,"category":[null]`), want{CodeStructure, "Observation.category[0]", "null is not allowed"})
	check(t, "empty object", obs(`,"valueQuantity":{}`), want{CodeStructure, "Observation.valueQuantity", "Empty objects are not allowed"})
	check(t, "empty object in array", obs(`,"category":[{}]`), want{CodeStructure, "Observation.category[0]", "Empty objects"})
	check(t, "empty array", obs(`,"category":[]`), want{CodeStructure, "Observation.category", "Empty arrays are not allowed"})
	check(t, "empty resource", `{}`, want{CodeRequired, "Resource", "resourceType"})
	check(t, "empty contained", obs(`,"contained":[{}]`), want{CodeStructure, "Observation.contained[0]", "Empty objects"})
	check(t, "string for object", obs(`,"code":"x"`), want{CodeStructure, "Observation.code", `"code" must be a JSON object, found a string`})
	check(t, "number for resource", obs(`,"contained":[1]`), want{CodeStructure, "Observation.contained[0]", "Expected a resource"})
}

func TestContained(t *testing.T) {
	check(t, "contained validated with own type", obs(`,"contained":[{"resourceType":"Patient","id":"p","gender":"x","status":"final"}]`),
		want{CodeCodeInvalid, "Observation.contained[0].gender", `"x" is not a valid code`},
		want{CodeStructure, "Observation.contained[0].status", "Unknown element"})
	check(t, "contained missing required", obs(`,"contained":[{"resourceType":"Observation","id":"o"}]`),
		want{CodeRequired, "Observation.contained[0].code", ""}, want{CodeRequired, "Observation.contained[0].status", ""})
	check(t, "contained bad id", obs(`,"contained":[{"resourceType":"Patient","id":"a b"}]`), want{CodeValue, "Observation.contained[0].id", "Invalid id"})
	check(t, "bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Patient","foo":1}}]}`,
		want{CodeStructure, "Bundle.entry[1].resource.foo", "Unknown element"})
	check(t, "bundle response outcome", `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}}}]}`)
	check(t, "outcome bad", `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"bad","code":"exception"}]}}}]}`,
		want{CodeCodeInvalid, "Bundle.entry[0].response.outcome.issue[0].severity", "not a valid code"})
}

func TestReferences(t *testing.T) {
	ref := func(r string) string {
		return fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":%q}}`, r)
	}
	ok := []string{"Patient/1", "Patient/a.b-C", "Group/1/_history/2", "Device/x", "Location/y",
		"http://example.org/fhir/Patient/1", "https://x.org/anything", "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
		"urn:uuid:9B1DEB4D-3B7D-4BAD-9BDD-2B0D7B3DCB6D", "urn:oid:2.16.840.1", "#", "#p1", "Patient?identifier=a|b",
		"http://example.org/fhir/Practitioner/1"}
	for _, r := range ok {
		check(t, "ok "+r, ref(r))
	}
	bad := []string{"Patient", "Patient/", "Patient/a b", "Patient/1/_history", "Patient/1/x/2", "Foo/1", "patient/1",
		"urn:uuid:123", "urn:oid:x", "#a b", "1", "/Patient/1", "Patient/1/_history/", "Patient?"}
	for _, r := range bad {
		check(t, "bad "+r, ref(r), want{CodeValue, "Observation.subject.reference", "Invalid reference"})
	}
	wrong := []string{"Practitioner/1", "Observation/2/_history/1", "Organization?name=x"}
	for _, r := range wrong {
		check(t, "wrong target "+r, ref(r), want{CodeInvalid, "Observation.subject.reference", "may refer to Patient, Group, Device, Location"})
	}
	check(t, "reference with whitespace url", ref("http://x.org/a b"), want{CodeValue, "Observation.subject.reference", "whitespace"})
	check(t, "reference empty", ref(""), want{CodeValue, "Observation.subject.reference", "Empty strings"})
	check(t, "any target", `{"resourceType":"Provenance","target":[{"reference":"Claim/1"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"Device/1"}}]}`)
	check(t, "array of references target", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"performer":[{"reference":"Practitioner/1"},{"reference":"Medication/1"}]}`,
		want{CodeInvalid, "Observation.performer[1].reference", "Reference to Medication is not allowed"})
	check(t, "extension reference unrestricted", obs(`,"extension":[{"url":"u","valueReference":{"reference":"Medication/1"}}]`))
	check(t, "reference bad in extension", obs(`,"extension":[{"url":"u","valueReference":{"reference":"Nope/1"}}]`), want{CodeValue, "Observation.extension[0].valueReference.reference", "Invalid reference"})
	check(t, "reference identifier only", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"identifier":{"value":"1"},"type":"Patient"}}`)
}

func TestBindings(t *testing.T) {
	check(t, "status ok", obs(""))
	check(t, "status bad", `{"resourceType":"Observation","status":"done","code":{"text":"x"}}`, want{CodeCodeInvalid, "Observation.status", `"done" is not a valid code for Observation.status; allowed: registered, preliminary, final`})
	check(t, "gender bad", `{"resourceType":"Patient","gender":"F"}`, want{CodeCodeInvalid, "Patient.gender", "allowed: male, female, other, unknown"})
	check(t, "array of codes", `{"resourceType":"Patient","telecom":[{"system":"phone","use":"hom"}]}`, want{CodeCodeInvalid, "Patient.telecom[0].use", "not a valid code"})
	check(t, "nested code", `{"resourceType":"Patient","name":[{"use":"official"},{"use":"bad"}]}`, want{CodeCodeInvalid, "Patient.name[1].use", ""})
	check(t, "non-enumerable required binding", obs(`,"extension":[{"url":"u","valueAttachment":{"contentType":"application/x-anything"}}]`))
	check(t, "extensible binding ignored", `{"resourceType":"Patient","maritalStatus":{"coding":[{"system":"x","code":"whatever"}]}}`)
	check(t, "coding not checked", obs(`,"meta":{"security":[{"system":"x","code":"y"}]}`))
	check(t, "quantity comparator", obs(`,"valueQuantity":{"value":1,"comparator":"=="}`), want{CodeCodeInvalid, "Observation.valueQuantity.comparator", "not a valid code"})
	check(t, "bad format before binding", `{"resourceType":"Patient","gender":" male"}`, want{CodeValue, "Patient.gender", "Invalid code"})
}

func TestNarrative(t *testing.T) {
	n := func(div string) string {
		return fmt.Sprintf(`{"resourceType":"Patient","text":{"status":"generated","div":%s}}`, div)
	}
	check(t, "ok", n(`"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"`))
	check(t, "ok plain", n(`"<div>x</div>"`))
	check(t, "not div", n(`"<p>x</p>"`), want{CodeValue, "Patient.text.div", "must be an XHTML <div> element"})
	check(t, "divx", n(`"<divx>"`), want{CodeValue, "Patient.text.div", "<div"})
	check(t, "plain text", n(`"hello"`), want{CodeValue, "Patient.text.div", "<div"})
	check(t, "empty", n(`"<div xmlns=\"http://www.w3.org/1999/xhtml\"> </div>"`), want{CodeValue, "Patient.text.div", "txt-2"})
	check(t, "image only", n(`"<div><img src=\"data:image/png;base64,AA==\"/></div>"`))
	check(t, "script", n(`"<div><script>alert(1)</script></div>"`), want{CodeValue, "Patient.text.div", "<script>"})
	check(t, "onerror", n(`"<div><img src=\"x\" onerror=\"alert(1)\"/>x</div>"`), want{CodeValue, "Patient.text.div", "onerror"})
	check(t, "javascript url", n(`"<div><a href=\" JavaScript:alert(1)\">x</a></div>"`), want{CodeValue, "Patient.text.div", "script URL"})
	check(t, "iframe", n(`"<div><iframe src=\"http://x\"></iframe>x</div>"`), want{CodeValue, "Patient.text.div", "<iframe>"})
	check(t, "not well-formed", n(`"<div><p>x</div>"`), want{CodeValue, "Patient.text.div", "well-formed"})
	check(t, "entities", n(`"<div>a &amp; b &nbsp; &lt;c&gt;</div>"`))
	check(t, "trailing text", n(`"<div>x</div>y"`), want{CodeValue, "Patient.text.div", "single <div>"})
	check(t, "not string", n(`{"x":1}`), want{CodeValue, "Patient.text.div", "must be a string"})
	check(t, "missing div", `{"resourceType":"Patient","text":{"status":"generated"}}`, want{CodeRequired, "Patient.text.div", "Missing required"})
	check(t, "bad status", `{"resourceType":"Patient","text":{"status":"made","div":"<div>x</div>"}}`, want{CodeCodeInvalid, "Patient.text.status", ""})
}

func TestIssueOrderDeterministic(t *testing.T) {
	v := testValidator(t)
	doc := `{"resourceType":"Patient","a":1,"b":2,"c":3,"gender":"x","name":[{"z":1},{"y":2}],"birthDate":"bad"}`
	first := v.Validate(decode(t, []byte(doc)))
	if len(first) != 7 {
		t.Fatalf("got %d issues: %+v", len(first), first)
	}
	for i := 0; i < 20; i++ {
		again := v.Validate(decode(t, []byte(doc)))
		for j := range first {
			if first[j] != again[j] {
				t.Fatalf("order differs: %+v vs %+v", first, again)
			}
		}
	}
}

func TestLongCodeList(t *testing.T) {
	check(t, "resource type code", `{"resourceType":"CapabilityStatement","status":"active","date":"2020","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","resource":[{"type":"Nope"}]}]}`,
		want{CodeCodeInvalid, "CapabilityStatement.rest[0].resource[0].type", "codes in total, see http://hl7.org/fhir/ValueSet/resource-types"})
}

func TestChoiceWithPrimitiveExtension(t *testing.T) {
	check(t, "value and ext of same variant", obs(`,"valueString":"a","_valueString":{"id":"x"}`))
	check(t, "ext of other variant", obs(`,"valueBoolean":true,"_valueString":{"id":"x"}`), want{CodeStructure, "Observation.value[x]", "found valueBoolean and valueString"})
	check(t, "two exts", obs(`,"_valueBoolean":{"id":"y"},"_valueString":{"id":"x"}`), want{CodeStructure, "Observation.value[x]", "Only one"})
}
