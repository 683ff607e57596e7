// Command compartmentsql prints the SQL condition a Patient- or Group-level
// export reads a type's rows with (pkg/compartment's Filter), for
// scripts/bench.sh to EXPLAIN it: compartmentsql TYPE PATIENT_ID...
package main

import (
	"fmt"
	"os"

	"github.com/fhirbulk/fhirbulk/pkg/compartment"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: compartmentsql TYPE PATIENT_ID...")
		os.Exit(2)
	}
	f, ok, err := compartment.Selection{IDs: os.Args[2:]}.Filter(os.Args[1])
	if err != nil || !ok {
		fmt.Fprintln(os.Stderr, "compartmentsql:", err, ok)
		os.Exit(1)
	}
	fmt.Println(f)
}
