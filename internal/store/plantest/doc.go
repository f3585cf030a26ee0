// Package plantest holds tests that searches keep their query plans as a
// database grows through the FHIR service: a store filled from empty, over
// the same path as HTTP transactions, must plan the reference searches as
// one reopened on the same data does. It has no non-test code.
package plantest
