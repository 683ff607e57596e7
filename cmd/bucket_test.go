package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"
	"google.golang.org/api/iterator"
)

// The bucket client commands: bput, bget, bls and bdel read and write the
// objects of the script's own servers (s3server, gcsserver, azurite) with
// each cloud's own SDK, not with gocloud.dev as fhirbulk does, so that a
// script checks fhirbulk against a client that does not share its code.
// The URLs are s3://BUCKET/KEY, gs://BUCKET/KEY and azblob://CONTAINER/KEY.

// bucketURL is a parsed s3://, gs:// or azblob:// URL.
type bucketURL struct {
	scheme, bucket, key string
}

func hasScheme(u, scheme string) bool { return strings.HasPrefix(u, scheme+"://") }

// parseBucketURL splits u; the key may be "" only where wantKey is false.
func parseBucketURL(ts *testscript.TestScript, cmd, u string, wantKey bool) bucketURL {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (scheme != "s3" && scheme != "gs" && scheme != "azblob") || strings.ContainsAny(rest, "?#") {
		ts.Fatalf("%s: want s3://, gs:// or azblob://BUCKET/KEY without a query, not %s", cmd, u)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" || (wantKey && key == "") {
		ts.Fatalf("%s: want %s://BUCKET/KEY, not %s", cmd, scheme, u)
	}
	return bucketURL{scheme, bucket, key}
}

// endpoint is the script's server for u's scheme, as its start command
// set it.
func (u bucketURL) endpoint(ts *testscript.TestScript, cmd string) string {
	v, server := "S3ENDPOINT", "s3server"
	switch u.scheme {
	case "gs":
		v, server = "GCSENDPOINT", "gcsserver"
	case "azblob":
		v, server = "AZENDPOINT", "azurite"
	}
	e := ts.Getenv(v)
	if e == "" {
		ts.Fatalf("%s: no %s in this script (no $%s)", cmd, server, v)
	}
	return e
}

// bput [-gzip] FILE URL uploads FILE (gzipped on the way with -gzip) to
// the script's server of URL's scheme.
func cmdBPut(ts *testscript.TestScript, neg bool, args []string) {
	gz := len(args) > 0 && args[0] == "-gzip"
	if gz {
		args = args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: bput [-gzip] FILE URL")
	}
	u := parseBucketURL(ts, "bput", args[1], true)
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		ts.Check(zw.Close())
		data = b.Bytes()
	}
	ctx := context.Background()
	endpoint := u.endpoint(ts, "bput")
	switch u.scheme {
	case "s3":
		_, err = s3TestClient(endpoint).PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(u.bucket), Key: aws.String(u.key), Body: bytes.NewReader(data),
		})
	case "gs":
		c := gcsTestClient(ts, endpoint)
		defer c.Close()
		w := c.Bucket(u.bucket).Object(u.key).NewWriter(ctx)
		if _, err = w.Write(data); err == nil {
			err = w.Close()
		} else {
			w.Close()
		}
	case "azblob":
		_, err = azTestClient(ts, endpoint).UploadBuffer(ctx, u.bucket, u.key, data, nil)
	}
	if err != nil {
		ts.Fatalf("bput %s: %v", args[1], oneLine(err.Error()))
	}
}

// bget URL FILE downloads the object URL into FILE (its bytes as stored,
// for cmp). With !, the object must not be there.
func cmdBGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: [!] bget URL FILE")
	}
	u := parseBucketURL(ts, "bget", args[0], true)
	ctx := context.Background()
	endpoint := u.endpoint(ts, "bget")
	var r io.ReadCloser
	var err error
	switch u.scheme {
	case "s3":
		var out *s3.GetObjectOutput
		if out, err = s3TestClient(endpoint).GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(u.bucket), Key: aws.String(u.key),
		}); err == nil {
			r = out.Body
		}
	case "gs":
		c := gcsTestClient(ts, endpoint)
		defer c.Close()
		r, err = c.Bucket(u.bucket).Object(u.key).NewReader(ctx)
	case "azblob":
		var out azblob.DownloadStreamResponse
		if out, err = azTestClient(ts, endpoint).DownloadStream(ctx, u.bucket, u.key, nil); err == nil {
			r = out.Body
		}
	}
	var data []byte
	if err == nil {
		data, err = io.ReadAll(r)
		r.Close()
	}
	if neg {
		if err == nil {
			ts.Fatalf("bget %s: the object is there (%d bytes)", args[0], len(data))
		}
		return
	}
	if err != nil {
		ts.Fatalf("bget %s: %v", args[0], oneLine(err.Error()))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), data, 0o666))
}

// bls URL prints the keys of URL's bucket that start with URL's key (all
// of them for a URL of the bucket alone), one a line, sorted, to the
// command's stdout (for stdout assertions).
func cmdBLs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: bls URL-PREFIX")
	}
	u := parseBucketURL(ts, "bls", args[0], false)
	ctx := context.Background()
	endpoint := u.endpoint(ts, "bls")
	var keys []string
	var err error
	switch u.scheme {
	case "s3":
		p := s3.NewListObjectsV2Paginator(s3TestClient(endpoint), &s3.ListObjectsV2Input{
			Bucket: aws.String(u.bucket), Prefix: aws.String(u.key),
		})
		for p.HasMorePages() && err == nil {
			var page *s3.ListObjectsV2Output
			if page, err = p.NextPage(ctx); err == nil {
				for _, o := range page.Contents {
					keys = append(keys, aws.ToString(o.Key))
				}
			}
		}
	case "gs":
		c := gcsTestClient(ts, endpoint)
		defer c.Close()
		it := c.Bucket(u.bucket).Objects(ctx, &storage.Query{Prefix: u.key})
		for {
			var a *storage.ObjectAttrs
			if a, err = it.Next(); err != nil {
				if errors.Is(err, iterator.Done) {
					err = nil
				}
				break
			}
			keys = append(keys, a.Name)
		}
	case "azblob":
		p := azTestClient(ts, endpoint).NewListBlobsFlatPager(u.bucket, &azblob.ListBlobsFlatOptions{Prefix: &u.key})
		for p.More() && err == nil {
			var page azblob.ListBlobsFlatResponse
			if page, err = p.NextPage(ctx); err == nil {
				for _, b := range page.Segment.BlobItems {
					keys = append(keys, *b.Name)
				}
			}
		}
	}
	if err != nil {
		ts.Fatalf("bls %s: %v", args[0], oneLine(err.Error()))
	}
	slices.Sort(keys)
	// Stdout even for no key: testscript keeps the previous command's
	// stdout unless this one asks for its own.
	out := ts.Stdout()
	for _, k := range keys {
		fmt.Fprintln(out, k)
	}
}

// bdel URL deletes the object URL.
func cmdBDel(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: bdel URL")
	}
	u := parseBucketURL(ts, "bdel", args[0], true)
	ctx := context.Background()
	endpoint := u.endpoint(ts, "bdel")
	var err error
	switch u.scheme {
	case "s3":
		_, err = s3TestClient(endpoint).DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(u.bucket), Key: aws.String(u.key),
		})
	case "gs":
		c := gcsTestClient(ts, endpoint)
		defer c.Close()
		err = c.Bucket(u.bucket).Object(u.key).Delete(ctx)
	case "azblob":
		_, err = azTestClient(ts, endpoint).DeleteBlob(ctx, u.bucket, u.key, nil)
	}
	if err != nil {
		ts.Fatalf("bdel %s: %v", args[0], oneLine(err.Error()))
	}
}
