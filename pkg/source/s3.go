package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
)

// An s3:// source is read through gocloud.dev/blob (s3blob), which puts
// S3, GCS, Azure Blob and local folders behind one API (issue 18 asks for
// the others next). The URL is s3://BUCKET/KEY, with two parameters at
// most: endpoint= (an S3-compatible store's base URL) and region=.
// Credentials come only from the AWS SDK's standard chain (environment,
// profile files, instance or workload identity), never from the URL.

// s3Location is what an s3:// URL names.
type s3Location struct {
	bucket   string
	key      string
	endpoint string // from endpoint=; "" for the environment's or AWS's
	region   string // from region=
}

// parseS3URL reads s3://BUCKET/KEY[?endpoint=URL&region=REGION]. Its
// errors never quote the query string (a parameter's name at most).
func parseS3URL(raw string) (s3Location, error) {
	const want = "want s3://BUCKET/KEY"
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || !strings.EqualFold(u.Scheme, "s3") || u.Opaque != "" {
		return s3Location{}, errors.New("not a URL: " + want)
	}
	if u.User != nil {
		return s3Location{}, errors.New("no user or password in an s3 URL: credentials come from the environment or a profile (AWS_ACCESS_KEY_ID, AWS_PROFILE)")
	}
	if u.Host == "" {
		return s3Location{}, errors.New("no bucket: " + want)
	}
	if u.Port() != "" || strings.Contains(u.Host, ":") {
		return s3Location{}, errors.New("a bucket name has no port (an S3-compatible store's address goes in endpoint= or AWS_ENDPOINT_URL)")
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		return s3Location{}, errors.New("a key has no fragment (write # as %23)")
	}
	loc := s3Location{bucket: u.Host, key: strings.TrimPrefix(u.Path, "/")}
	switch {
	case loc.key == "":
		return s3Location{}, errors.New("no key: " + want)
	case strings.HasSuffix(loc.key, "/"):
		return s3Location{}, errors.New("names a folder (a key ending in /): " + want)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return s3Location{}, errors.New("a query string that does not parse")
	}
	for name, vs := range q {
		switch {
		case len(vs) > 1 && (name == "endpoint" || name == "region"):
			return s3Location{}, fmt.Errorf("%s= given %d times", name, len(vs))
		}
		switch name {
		case "endpoint":
			e, err := url.Parse(vs[0])
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil || e.RawQuery != "" {
				return s3Location{}, errors.New("endpoint= wants http(s)://HOST[:PORT] (no user info, no query)")
			}
			loc.endpoint = vs[0]
		case "region":
			if vs[0] == "" {
				return s3Location{}, errors.New("region= is empty")
			}
			loc.region = vs[0]
		default:
			// Not named: it may be a pre-signed URL's signature.
			return s3Location{}, errors.New("a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)")
		}
	}
	return loc, nil
}

var s3Opener = opener{
	check: func(raw string) error {
		_, err := parseS3URL(raw)
		return err
	},
	open: func(ctx context.Context, raw string, opts Options) (io.ReadCloser, int64, error) {
		loc, err := parseS3URL(raw)
		if err != nil {
			return nil, -1, err
		}
		b, err := openS3(ctx, loc, opts)
		if err != nil {
			return nil, -1, err
		}
		return b, b.size, nil
	},
}

// s3Endpoint is the endpoint an s3 URL goes to: its endpoint=, else the
// AWS SDKs' standard variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL);
// "" is AWS itself.
func s3Endpoint(loc s3Location) string {
	if loc.endpoint != "" {
		return loc.endpoint
	}
	if e := os.Getenv("AWS_ENDPOINT_URL_S3"); e != "" {
		return e
	}
	return os.Getenv("AWS_ENDPOINT_URL")
}

// openS3Bucket opens loc's bucket: the AWS SDK's default configuration
// (credentials, region, profile), and for any endpoint but AWS's
// path-style addressing (http://HOST/BUCKET/KEY: an S3-compatible store
// seldom has a DNS name per bucket) and checksums only when required:
// since early 2025 the SDKs send and ask for CRC32 checksums by default,
// which many S3-compatible stores refuse.
func openS3Bucket(ctx context.Context, loc s3Location, opts Options) (*blob.Bucket, error) {
	endpoint := s3Endpoint(loc)
	// The SDK's own log lines ("WARN falling back to IMDSv1") would go to
	// stderr between ours: errors come back as errors, said once.
	lo := []func(*config.LoadOptions) error{config.WithLogger(logging.Nop{})}
	if loc.region != "" {
		lo = append(lo, config.WithRegion(loc.region))
	}
	if endpoint != "" {
		lo = append(lo,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		// A broken profile file, say: its message names the file, not a secret.
		return nil, fetchErrorf("AWS configuration: %s", RedactText(err.Error()))
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // any will do for an S3-compatible store
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		o.RetryMaxAttempts = opts.Tries
	})
	return s3blob.OpenBucket(ctx, client, loc.bucket, &s3blob.Options{
		RequestChecksumCalculation: cfg.RequestChecksumCalculation,
	})
}

// s3Body is an S3 object's content that survives a dropped connection or
// a silent store by asking again: from the start while nothing has been
// delivered, else for the rest (a ranged GET) only while the object's
// ETag is the one first read (If-Match); otherwise the read fails with
// ErrRestart, as an http source's does. Close may come while a Read waits
// in another goroutine, as for httpBody.
type s3Body struct {
	stream
	bucket *blob.Bucket
	loc    s3Location
	etag   string // "": no resume
}

func openS3(ctx context.Context, loc s3Location, opts Options) (*s3Body, error) {
	bucket, err := openS3Bucket(ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	b := &s3Body{stream: stream{ctx: ctx, stop: stop, opts: opts, size: -1, cause: blobCause}, bucket: bucket, loc: loc}
	r, rq, err := b.get(0)
	if err != nil {
		stop()
		bucket.Close()
		return nil, err
	}
	b.start(r, rq)
	return b, nil
}

// start takes a reader of the whole object, its size and ETag.
func (b *s3Body) start(r *blob.Reader, rq *request) {
	b.setBody(r, rq)
	b.size = r.Size()
	b.etag = objectETag(r)
}

func objectETag(r *blob.Reader) string {
	var out s3.GetObjectOutput
	if r.As(&out) {
		if etag := aws.ToString(out.ETag); !strings.HasPrefix(etag, "W/") {
			return etag
		}
	}
	return ""
}

// get starts a GET of the object from off (0: all of it; else only while
// its ETag is b.etag). The SDK retries what is worth retrying (503
// SlowDown, throttling, network errors) up to Options.Tries times.
func (b *s3Body) get(off int64) (*blob.Reader, *request, error) {
	rq := newRequest(b.ctx, b.opts.IdleTimeout)
	ro := &blob.ReaderOptions{BeforeRead: func(as func(any) bool) error {
		var in *s3.GetObjectInput
		if off > 0 && as(&in) {
			in.IfMatch = aws.String(b.etag)
		}
		return nil
	}}
	r, err := b.bucket.NewRangeReader(rq.ctx, b.loc.key, off, -1, ro)
	rq.done()
	if err != nil {
		rq.end()
		switch {
		case b.ctx.Err() != nil:
			return nil, nil, b.ctx.Err()
		case rq.timedOut():
			return nil, nil, fetchErrorf("no data for %s", shortDuration(b.opts.IdleTimeout))
		case off > 0 && (apiCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed):
			return nil, nil, fmt.Errorf("%w (the object changed: its ETag is not the one first read)", ErrRestart)
		}
		return nil, nil, s3Error(err, b.loc)
	}
	return r, rq, nil
}

// apiCode is the S3 error code of err ("NoSuchKey"), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status of the store's answer err is, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// s3Error says in one line what a GET of loc failed on: no bucket, no key,
// a denied request, or the store's error code, never a credential (the
// source's name, said before it, names the bucket and the key).
func s3Error(err error, loc s3Location) error {
	status := httpStatus(err)
	switch code := apiCode(err); {
	case code == "NoSuchBucket":
		return fetchErrorf("no such bucket %q", loc.bucket)
	case code == "NoSuchKey", code == "NotFound", code == "" && status == http.StatusNotFound:
		return fetchErrorf("no such key %q in bucket %q", loc.key, loc.bucket)
	case code == "AccessDenied", code == "Forbidden", code == "" && status == http.StatusForbidden:
		return fetchErrorf("access denied (GetObject on bucket %q)", loc.bucket)
	case code == "InvalidAccessKeyId":
		return fetchErrorf("the store does not know the access key (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID or the profile")
	case code == "SignatureDoesNotMatch":
		return fetchErrorf("the request's signature does not match (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY or the profile")
	case code == "ExpiredToken", code == "TokenRefreshRequired":
		return fetchErrorf("the credentials have expired (%s)", code)
	case code != "":
		msg := code
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorMessage() != "" {
			msg += ": " + firstLine(ae.ErrorMessage())
		}
		if status != 0 {
			msg += fmt.Sprintf(" (HTTP %d)", status)
		}
		return fetchErrorf("%s", RedactText(msg))
	case status != 0:
		return fetchErrorf("HTTP %d %s", status, http.StatusText(status))
	}
	// Not an answer from the store: no credentials, a network error. The
	// SDK's wrappers ("operation error S3: GetObject, ...") go.
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Err != nil {
		err = re.Err
	}
	msg := firstLine(netMessage(err))
	if strings.Contains(msg, "get credentials:") {
		// The SDK's chain found none: its message lists each place it
		// looked, at length.
		return fetchErrorf("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
	}
	return fetchErrorf("%s", msg)
}

// blobCause is the error under gocloud.dev/blob's wrapper, whose message
// ("blob (key \"k\") (code=Unknown): unexpected EOF") would repeat the key.
func blobCause(err error) error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := u.Unwrap(); len(errs) > 0 && errs[0] != nil {
			return errs[0]
		}
	}
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func (b *s3Body) Read(p []byte) (int, error) { return b.read(p, b.again) }

// again replaces a body that broke off for reason, or says why it cannot.
func (b *s3Body) again(reason string) error {
	if b.off > 0 && (b.etag == "" || b.size < 0) {
		return fmt.Errorf("%w (%s)", ErrRestart, reason)
	}
	if b.breaks++; b.breaks >= b.opts.Tries {
		return fetchErrorf("%s (gave up after %d tries)", reason, b.breaks)
	}
	r, rq, err := b.get(b.off)
	if err != nil {
		return err
	}
	if b.off == 0 {
		b.start(r, rq) // nothing delivered: any version will do
		return nil
	}
	// If-Match should have refused another version; a store that ignores
	// it is caught here.
	if etag := objectETag(r); etag != b.etag || r.Size() != b.size {
		r.Close()
		rq.end()
		return fmt.Errorf("%w (the resumed object is not the rest of the same version)", ErrRestart)
	}
	b.setBody(r, rq)
	return nil
}

// Close ends the body; a Read waiting for the store in another goroutine
// returns.
func (b *s3Body) Close() error {
	b.close()
	return b.bucket.Close()
}
