package sink

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
)

// startS3 serves an S3 API (gofakes3, in memory) with the bucket b, and
// points the AWS variables at it.
func startS3(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gofakes3.New(backend).Server()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("AWS_ENDPOINT_URL", "http://"+l.Addr().String())
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// multipartUploads lists the multipart uploads open in bucket b.
func multipartUploads(t *testing.T) []string {
	t.Helper()
	b, err := bucket.Open(context.Background(), bucket.Location{Scheme: "s3", Bucket: "b"}, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var c *s3.Client
	if !b.As(&c) {
		t.Fatal("not an S3 bucket")
	}
	out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String("b")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// An upload abandoned after its multipart upload began (Ctrl-C: its
// context cancelled; an error: Abort) leaves no parts on the store: the
// transfer manager's own abort uses the cancelled context and fails, so
// the sink aborts the uploads it started itself. The object never appears.
func TestObjectAbortLeavesNoParts(t *testing.T) {
	startS3(t)
	for _, cancelFirst := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		d, err := Open(Options{Path: "s3://b/out.ndjson", Context: ctx, Upload: Upload{PartSize: MinPartSize, Concurrency: 1}})
		if err != nil {
			t.Fatal(err)
		}
		chunk := bytes.Repeat([]byte("{}\n"), 1<<20)
		for i := 0; i < 10; i++ { // 30 MiB: over the 16 MiB before a multipart upload
			if _, err := d.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if cancelFirst {
			cancel()
		}
		d.Abort()
		cancel()
		if left := multipartUploads(t); len(left) != 0 {
			t.Errorf("cancelled %v: multipart uploads left: %q", cancelFirst, left)
		}
	}
	b, _ := bucket.Open(context.Background(), bucket.Location{Scheme: "s3", Bucket: "b"}, bucket.Options{})
	defer b.Close()
	if ok, _ := b.Exists(context.Background(), "out.ndjson"); ok {
		t.Error("an aborted object appeared")
	}
}
