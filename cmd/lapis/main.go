// Command lapis is the Lapis FHIR server and its administration tool.
//
//	lapis serve   runs the FHIR R4 server
//	lapis import  loads Bundles and NDJSON files into the database
//
// Run "lapis --help" for every command and flag.
package main

import (
	"os"

	"github.com/lapis-health/lapis/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
