package source

import (
	"context"
	"fmt"
	"io"

	"gocloud.dev/blob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
)

// An object in a bucket (s3://, gs://, azblob://BUCKET/KEY) is read
// through pkg/bucket, which opens the bucket with the cloud's standard
// credentials and says a store's failures in one line; see it for the
// URL's form and the environment each cloud reads.

var objectOpener = opener{
	check: func(raw string) error {
		_, err := bucket.ParseObject(raw)
		return err
	},
	open: func(ctx context.Context, raw string, opts Options) (io.ReadCloser, int64, error) {
		loc, err := bucket.ParseObject(raw)
		if err != nil {
			return nil, -1, err
		}
		b, err := openObject(ctx, loc, opts)
		if err != nil {
			return nil, -1, err
		}
		return b, b.size, nil
	},
}

// objectBody is an object's content that survives a dropped connection or
// a silent store by asking again: from the start while nothing has been
// delivered, else for the rest (a ranged read) only while the object is
// the version first read (bucket.Pin); otherwise the read fails with
// ErrRestart, as an http source's does. Close may come while a Read waits
// in another goroutine, as for httpBody.
type objectBody struct {
	stream
	bucket  *blob.Bucket
	loc     bucket.Location
	version string // "": no resume
}

func openObject(ctx context.Context, loc bucket.Location, opts Options) (*objectBody, error) {
	b0, err := bucket.Open(ctx, loc, bucket.Options{Tries: opts.Tries})
	if err != nil {
		return nil, storeError(err, bucket.OpRead, loc)
	}
	ctx, stop := context.WithCancel(ctx)
	b := &objectBody{stream: stream{ctx: ctx, stop: stop, opts: opts, size: -1, cause: bucket.Cause}, bucket: b0, loc: loc}
	r, rq, err := b.get(0)
	if err != nil {
		stop()
		b0.Close()
		return nil, err
	}
	b.start(r, rq)
	return b, nil
}

// storeError is err said by pkg/bucket, as a fetch error (not about the
// bytes), with any URL in it redacted.
func storeError(err error, op bucket.Op, loc bucket.Location) error {
	return fetchErrorf("%s", RedactText(bucket.Describe(err, op, loc).Error()))
}

// start takes a reader of the whole object, its size and version.
func (b *objectBody) start(r *blob.Reader, rq *request) {
	b.setBody(r, rq)
	b.size = r.Size()
	b.version = bucket.Version(r)
}

// get starts a read of the object from off (0: all of it; else only while
// it is b.version). The cloud's SDK retries what is worth retrying (S3's
// 503 SlowDown, GCS's 429, network errors).
func (b *objectBody) get(off int64) (*blob.Reader, *request, error) {
	rq := newRequest(b.ctx, b.opts.IdleTimeout)
	ro := &blob.ReaderOptions{}
	if off > 0 {
		ro.BeforeRead = bucket.Pin(b.version)
	}
	r, err := b.bucket.NewRangeReader(rq.ctx, b.loc.Key, off, -1, ro)
	rq.done()
	if err != nil {
		rq.end()
		switch {
		case b.ctx.Err() != nil:
			return nil, nil, b.ctx.Err()
		case rq.timedOut():
			return nil, nil, fetchErrorf("no data for %s", shortDuration(b.opts.IdleTimeout))
		case off > 0 && bucket.IsPreconditionFailed(err):
			return nil, nil, fmt.Errorf("%w (the object changed: it is not the version first read)", ErrRestart)
		case off > 0 && bucket.IsNotFound(err):
			return nil, nil, fmt.Errorf("%w (the object is gone, or is not the version first read)", ErrRestart)
		}
		return nil, nil, storeError(err, bucket.OpRead, b.loc)
	}
	return r, rq, nil
}

func (b *objectBody) Read(p []byte) (int, error) { return b.read(p, b.again) }

// again replaces a body that broke off for reason, or says why it cannot.
func (b *objectBody) again(reason string) error {
	if b.off > 0 && (b.version == "" || b.size < 0) {
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
	// The pin should have refused another version; a store that ignores
	// it is caught here.
	if v := bucket.Version(r); v != b.version || r.Size() != b.size {
		r.Close()
		rq.end()
		return fmt.Errorf("%w (the resumed object is not the rest of the same version)", ErrRestart)
	}
	b.setBody(r, rq)
	return nil
}

// Close ends the body; a Read waiting for the store in another goroutine
// returns.
func (b *objectBody) Close() error {
	b.close()
	return b.bucket.Close()
}
