package cmd

import (
	"context"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/rogpeppe/go-internal/testscript"
	"google.golang.org/api/option"
)

// gcsserver [BUCKET...] serves fake-gcs-server (its Go library,
// fakestorage, in memory) from the test process on a free port of
// 127.0.0.1 over plain HTTP for this script, stopped when it ends, and
// creates the buckets. It sets STORAGE_EMULATOR_HOST=127.0.0.1:PORT, which
// gocloud.dev's gcsblob (and Google's storage client) take to mean: this
// endpoint over http, no credentials; $GCSENDPOINT is http://127.0.0.1:PORT.
// GOOGLE_APPLICATION_CREDENTIALS and CLOUDSDK_CONFIG point at nothing, so
// that a client that does look for credentials finds none of the machine's.
func cmdGCSServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! gcsserver")
	}
	t0 := time.Now()
	// The port is chosen first, as PublicHost wants it: Google's client
	// reads objects by the XML API, GET http://HOST/BUCKET/OBJECT, which
	// fake-gcs-server takes for that only from its PublicHost (from any
	// other host it reads HOST as a bucket name). Another process may take
	// the port in between: a few tries.
	var srv *fakestorage.Server
	var endpoint string
	for try := 0; ; try++ {
		port := freePort(ts)
		host := "127.0.0.1:" + strconv.Itoa(port)
		endpoint = "http://" + host
		var err error
		srv, err = fakestorage.NewServerWithOptions(fakestorage.Options{
			Scheme: "http", Host: "127.0.0.1", Port: uint16(port),
			PublicHost: host, ExternalURL: endpoint,
		})
		if err == nil {
			break
		}
		if try == 4 {
			ts.Fatalf("gcsserver: %v", err)
		}
	}
	ts.Defer(srv.Stop)
	for _, b := range args {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	ts.Logf("gcsserver answered after %.2fs", time.Since(t0).Seconds())
	ts.Setenv("GCSENDPOINT", endpoint)
	ts.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(endpoint, "http://"))
	ts.Setenv("GOOGLE_APPLICATION_CREDENTIALS", ts.MkAbs("no-gcp-credentials.json"))
	ts.Setenv("CLOUDSDK_CONFIG", ts.MkAbs("no-gcloud-config"))
}

// gcsTestClient is Google's own storage client for the script's
// gcsserver, by its JSON API over http, without credentials.
func gcsTestClient(ts *testscript.TestScript, endpoint string) *storage.Client {
	c, err := storage.NewClient(context.Background(),
		option.WithEndpoint(endpoint+"/storage/v1/"), option.WithoutAuthentication())
	ts.Check(err)
	return c
}
