package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gocloud.dev/blob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// An output in a bucket (s3://, gs://, azblob://BUCKET/KEY) is streamed
// as a multipart upload (S3; resumable or block uploads on GCS and Azure)
// that the store makes visible only when it is completed, by Commit; an
// Abort, a failure or a cancelled context aborts it, and the store drops
// its parts. Memory is bounded by Upload, per object being written: on S3
// PartSize bytes for each of Concurrency parts in flight and one being
// filled (and at least the 16 MiB the AWS SDK reads before it chooses
// between one PUT and a multipart upload); on Azure Concurrency blocks;
// on GCS one chunk.

// Upload tunes how an object is uploaded.
type Upload struct {
	PartSize    int // bytes of each part of a multipart upload (0: DefaultPartSize)
	Concurrency int // parts uploaded at once (0: DefaultConcurrency)
}

// The defaults of Upload: 16 MiB x (4 + 1) = 80 MiB of parts per object
// at most on S3, enough for a large object (S3 allows 10,000 parts: 160 GiB) and
// to keep a link busy.
const (
	DefaultPartSize    = 16 << 20
	DefaultConcurrency = 4
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
)

func (u Upload) writerOptions(contentType string, ifNotExist bool) *blob.WriterOptions {
	if u.PartSize <= 0 {
		u.PartSize = DefaultPartSize
	}
	if u.Concurrency <= 0 {
		u.Concurrency = DefaultConcurrency
	}
	return &blob.WriterOptions{
		BufferSize:     u.PartSize,
		MaxConcurrency: u.Concurrency,
		ContentType:    contentType, // given, so gocloud does not hold the first bytes to sniff it
		IfNotExist:     ifNotExist,
	}
}

// contentType is what an output named key holds.
func contentType(key string, gzip bool) string {
	switch {
	case gzip || strings.HasSuffix(key, ".gz"):
		return "application/gzip"
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".ndjson"):
		return "application/fhir+ndjson"
	}
	return "application/octet-stream"
}

// objectWriter is one object being uploaded: the bottom of a Sink.
type objectWriter struct {
	w       *blob.Writer
	cancel  context.CancelFunc
	b       *blob.Bucket
	uploads *bucket.Uploads // S3 multipart uploads it started
	loc     bucket.Location
	close   func() // the bucket, when the writer owns it
	err     error  // sticky: the upload failed
}

// startUpload starts writing loc in b: not over an existing object unless
// force (a conditional write refuses one that appears meanwhile, where
// the store supports it).
func startUpload(ctx context.Context, b *blob.Bucket, loc bucket.Location, gzip, force bool, up Upload) (*objectWriter, error) {
	ctx, uploads := bucket.RecordUploads(ctx)
	ctx, cancel := context.WithCancel(ctx)
	w, err := b.NewWriter(ctx, loc.Key, up.writerOptions(contentType(loc.Key, gzip), !force))
	if err != nil {
		cancel()
		return nil, outputError(loc, err)
	}
	return &objectWriter{w: w, cancel: cancel, b: b, uploads: uploads, loc: loc}, nil
}

func (o *objectWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = outputError(o.loc, err)
		return n, o.err
	}
	return n, nil
}

// commit completes the upload: the object appears, whole. An object that
// appeared meanwhile (without force) is an *ExistsError.
func (o *objectWriter) commit() error {
	err := o.w.Close()
	if err != nil {
		// A multipart upload that could not be completed (a conditional
		// write refused, say) is still there: abort it.
		o.uploads.Abort(context.Background(), o.b, o.loc)
	}
	o.cancel()
	o.done()
	switch {
	case err == nil:
		return o.err
	case bucket.IsPreconditionFailed(err):
		return &ExistsError{Path: o.loc.String()}
	}
	return outputError(o.loc, err)
}

// abort cancels the upload: nothing appears, and the store drops what was
// sent (S3's multipart upload aborted here: see bucket.Uploads).
func (o *objectWriter) abort() {
	o.cancel()
	o.w.Close() // with the context cancelled, Close aborts: its error is expected
	o.uploads.Abort(context.Background(), o.b, o.loc)
	o.done()
}

func (o *objectWriter) done() {
	if o.close != nil {
		o.close()
		o.close = nil
	}
}

// outputError says what went wrong with the output loc, in one line.
func outputError(loc bucket.Location, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("output %s: %w", loc, redacted(bucket.Describe(err, bucket.OpWrite, loc)))
}

// redacted is err with any URL in its message redacted (a wrapper that
// quotes a request's URL would show a signature).
func redacted(err error) error {
	if msg := source.RedactText(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// openObject opens the output opts.Path, a bucket URL naming an object.
func openObject(opts Options) (*Sink, error) {
	loc, err := bucket.ParseObject(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", source.Redact(opts.Path), err)
	}
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	b, err := bucket.Open(ctx, loc, bucket.Options{})
	if err != nil {
		return nil, outputError(loc, err)
	}
	if !opts.Force {
		// Said now, not after the whole upload: the conditional write at
		// the end only settles a race. A HEAD that is refused (a writer
		// may not be allowed to read; a HEAD's answer has no body to say
		// why) leaves it to that write, whose answer says.
		if ok, err := b.Exists(ctx, loc.Key); err == nil && ok {
			b.Close()
			return nil, &ExistsError{Path: loc.String()}
		}
	}
	s := &Sink{opts: opts, path: loc.String()}
	if strings.HasSuffix(loc.Key, ".gz") {
		s.opts.Gzip = true
	}
	o, err := startUpload(ctx, b, loc, s.opts.Gzip, opts.Force, opts.Upload)
	if err != nil {
		b.Close()
		return nil, err
	}
	o.close = func() { b.Close() }
	s.obj = o
	if err := s.layer(o); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}
