// Command fhirbulk moves FHIR resources in bulk between PostgreSQL (Aidbox
// storage layout) and ndjson streams. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fhirbulk/fhirbulk/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default so a second one kills at once.
		<-ctx.Done()
		stop()
	}()
	os.Exit(cmd.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
