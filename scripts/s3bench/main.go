// Command s3bench serves an S3 API on 127.0.0.1 for scripts/bench.sh: the
// gofakes3 server (github.com/johannesboyne/gofakes3, the tests' in-process
// S3) with its objects in memory, so that an export or a load through it
// measures fhirbulk's side of S3 (multipart uploads, ranged reads) and not
// a slow store's. It prints its address on stdout, then serves until
// killed. Usage: go run ./scripts/s3bench BUCKET...
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	backend := s3mem.New()
	for _, b := range os.Args[1:] {
		if err := backend.CreateBucket(b); err != nil {
			fmt.Fprintln(os.Stderr, "s3bench: bucket", b+":", err)
			os.Exit(1)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3bench:", err)
		os.Exit(1)
	}
	fmt.Printf("http://%s\n", l.Addr())
	os.Stdout.Sync()
	if err := http.Serve(l, gofakes3.New(backend).Server()); err != nil {
		fmt.Fprintln(os.Stderr, "s3bench:", err)
		os.Exit(1)
	}
}
