package searchtest

// fixtures is the hand-made data set every search in the table runs
// against. Ids are chosen by the test (PUT in one transaction) so that the
// expected result sets can name them. Keep the comments next to each
// resource in sync with the expectations in search_test.go.
var fixtures = []string{
	// p1: male, active, identifier mrn|12345, tagged vip, us-core profile,
	// managed by org1, GP pr1.
	`{"resourceType":"Patient","id":"p1",
	  "meta":{"tag":[{"system":"http://example.org/tags","code":"vip"}],
	          "profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
	  "identifier":[{"system":"http://hospital.example/mrn","value":"12345","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}],"text":"Medical record number"}}],
	  "active":true,
	  "name":[{"family":"Chalmers","given":["Peter","James"],"text":"Peter James Chalmers"}],
	  "telecom":[{"system":"phone","value":"(03) 5555 6473","use":"work"}],
	  "gender":"male","birthDate":"1974-12-25",
	  "address":[{"line":["534 Erewhon St"],"city":"PleasantVille","state":"Vic","postalCode":"3999","country":"Australia"}],
	  "generalPractitioner":[{"reference":"Practitioner/pr1"}],
	  "managingOrganization":{"reference":"Organization/org1"}}`,
	// p2: female, inactive, accented names, two identifiers (one without
	// system), restricted security label.
	`{"resourceType":"Patient","id":"p2",
	  "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},
	  "identifier":[{"system":"http://hospital.example/mrn","value":"67890"},{"value":"noSys"}],
	  "active":false,
	  "name":[{"family":"Müller","given":["Zoë"]}],
	  "gender":"female","birthDate":"1980-05-17",
	  "address":[{"city":"Berlin","country":"Germany"}]}`,
	// p3: female, birth year only, links to p1.
	`{"resourceType":"Patient","id":"p3",
	  "name":[{"family":"Chalmerson","given":["Anna"]}],
	  "gender":"female","birthDate":"1980",
	  "address":[{"city":"Pleasant Hill"}],
	  "link":[{"other":{"reference":"Patient/p1"},"type":"seealso"}]}`,
	// p4: name text only, no gender, birth month only.
	`{"resourceType":"Patient","id":"p4",
	  "name":[{"text":"Bob Smith"}],
	  "birthDate":"1975-03"}`,
	// p5: gender other; updated again after the load (see lastUpdated tests).
	`{"resourceType":"Patient","id":"p5",
	  "name":[{"family":"van Dyke","given":["Dick"]}],
	  "gender":"other","birthDate":"2001-01-01"}`,
	`{"resourceType":"Group","id":"g1","type":"person","actual":true,"name":"Chalmers family"}`,
	`{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Welby","given":["Marcus"]}]}`,
	`{"resourceType":"Organization","id":"org1","name":"Acme Health"}`,
	// o1: systolic BP 120 mm[Hg], p1, dateTime with +02:00.
	`{"resourceType":"Observation","id":"o1","status":"final",
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
	  "subject":{"reference":"Patient/p1"},
	  "effectiveDateTime":"2015-06-15T10:00:00+02:00",
	  "valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`,
	// o2: heart rate, p1, Period 2015-06-01..2015-06-30, 5.4 mg (UCUM).
	`{"resourceType":"Observation","id":"o2","status":"amended",
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
	  "subject":{"reference":"Patient/p1"},
	  "effectivePeriod":{"start":"2015-06-01","end":"2015-06-30"},
	  "valueQuantity":{"value":5.4,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`,
	// o3: BP panel with components, p2, Period open at the end, issued instant.
	`{"resourceType":"Observation","id":"o3","status":"preliminary",
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel with all children optional"}]},
	  "subject":{"reference":"Patient/p2"},
	  "effectivePeriod":{"start":"2016-01-01T00:00:00Z"},
	  "issued":"2016-01-02T10:00:00.000Z",
	  "component":[
	    {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":150,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
	    {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":90,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`,
	// o4: SNOMED code, subject Group g1, Period open at the start, 5.4 with unit only.
	`{"resourceType":"Observation","id":"o4","status":"final",
	  "code":{"coding":[{"system":"http://snomed.info/sct","code":"271649006","display":"Systolic blood pressure"}]},
	  "subject":{"reference":"Group/g1"},
	  "effectivePeriod":{"end":"2014-12-31"},
	  "valueQuantity":{"value":5.4,"unit":"mg"}}`,
	// o5: text-only code, subject p3 as an absolute URL of this server, instant.
	`{"resourceType":"Observation","id":"o5","status":"cancelled",
	  "code":{"text":"Free text code"},
	  "subject":{"reference":"http://localhost:8080/fhir/Patient/p3"},
	  "effectiveInstant":"2015-06-15T23:30:00Z"}`,
	// o6: systolic BP 95 mm[Hg], p2, no effective date.
	`{"resourceType":"Observation","id":"o6","status":"final",
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
	  "subject":{"reference":"Patient/p2"},
	  "valueQuantity":{"value":95,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`,
	`{"resourceType":"Provenance","id":"prov1","target":[{"reference":"Patient/p1"}],
	  "recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"Practitioner/pr1"}}]}`,
	// ra1's subject is an absolute URL of this server (sorts as Patient/p1).
	`{"resourceType":"RiskAssessment","id":"ra1","status":"final","subject":{"reference":"http://localhost:8080/fhir/Patient/p1"},
	  "prediction":[{"probabilityDecimal":0.1}]}`,
	`{"resourceType":"RiskAssessment","id":"ra2","status":"final","subject":{"reference":"Patient/p2"},
	  "prediction":[{"probabilityDecimal":0.25}]}`,
	`{"resourceType":"RiskAssessment","id":"ra3","status":"final","subject":{"reference":"Patient/p3"},
	  "prediction":[{"probabilityRange":{"low":{"value":0.2},"high":{"value":0.4}}}]}`,
	// Encounters whose length has a comparator (the range of "<5" is
	// everything below 5).
	`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
	  "length":{"value":5,"comparator":"<","unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`,
	`{"resourceType":"Encounter","id":"e2","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
	  "length":{"value":200,"comparator":">=","unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`,
	`{"resourceType":"Encounter","id":"e3","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
	  "length":{"value":5,"unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`,
	// bin1's securityContext is p1 by an absolute URL of this server,
	// bin2's a DocumentReference.
	`{"resourceType":"Binary","id":"bin1","contentType":"text/plain","securityContext":{"reference":"http://localhost:8080/fhir/Patient/p1"},"data":"eA=="}`,
	`{"resourceType":"Binary","id":"bin2","contentType":"text/plain","securityContext":{"reference":"DocumentReference/d1"},"data":"eA=="}`,
	`{"resourceType":"ValueSet","id":"vs1","status":"active","url":"http://example.org/fhir/ValueSet/abc"}`,
	`{"resourceType":"ValueSet","id":"vs2","status":"active","url":"http://example.org/fhir/ValueSet/abc/def"}`,
	`{"resourceType":"ValueSet","id":"vs3","status":"active","url":"http://other.org/fhir/ValueSet/abc"}`,
}
