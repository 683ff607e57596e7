package bucket

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"gocloud.dev/blob"
)

// An S3 upload that is cancelled is not aborted on the store: the AWS
// transfer manager under gocloud's s3blob sends AbortMultipartUpload with
// the very context that was cancelled, so it fails, and the parts stay
// (billed) until a lifecycle rule removes them. Uploads records the
// multipart uploads started under a context (every S3 client Open makes
// reports its CreateMultipartUpload answers to it), so that its owner
// aborts exactly those, and no other writer's, with a context of its own.

// Uploads is the multipart uploads started under a context of
// RecordUploads.
type Uploads struct {
	mu  sync.Mutex
	ids []string
}

type uploadsKey struct{}

// RecordUploads is ctx, recording the multipart uploads started under it.
func RecordUploads(ctx context.Context) (context.Context, *Uploads) {
	u := &Uploads{}
	return context.WithValue(ctx, uploadsKey{}, u), u
}

// Abort aborts the recorded uploads of key in b (an S3 bucket; other
// stores drop an uncommitted upload by themselves), best effort, with a
// context of its own: the caller's may be the one that was cancelled.
func (u *Uploads) Abort(ctx context.Context, b *blob.Bucket, l Location) {
	u.mu.Lock()
	ids := u.ids
	u.ids = nil
	u.mu.Unlock()
	var c *s3.Client
	if len(ids) == 0 || !b.As(&c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), UploadId: aws.String(id)})
	}
}

// recordUploads is the S3 client middleware that tells a context's
// Uploads of each multipart upload started under it.
func recordUploads(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("fhirbulkRecordUploads",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			if o, ok := out.Result.(*s3.CreateMultipartUploadOutput); ok && err == nil && o.UploadId != nil {
				if u, ok := ctx.Value(uploadsKey{}).(*Uploads); ok {
					u.mu.Lock()
					u.ids = append(u.ids, *o.UploadId)
					u.mu.Unlock()
				}
			}
			return out, md, err
		}), middleware.After)
}
