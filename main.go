// Command fhirbulk moves FHIR resources in bulk between PostgreSQL (Aidbox
// storage layout) and ndjson streams. See README.md.
package main

import (
	"os"

	"github.com/fhirbulk/fhirbulk/cmd"
)

func main() { os.Exit(cmd.Run()) }
