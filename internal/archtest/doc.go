// Package archtest holds the tests of Lapis's architecture: which
// packages may depend on which. Dependencies point one way (HTTP →
// domain → storage), and the layers a request crosses before
// authorization (gateway policies, authentication, audit) know nothing of
// the FHIR store or of what a caller may do. It has no code of its own.
package archtest
