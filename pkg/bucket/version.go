package bucket

import (
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
)

// A read that broke off resumes only on the same version of the object:
// Version tells the version a reader got (an S3 or Azure strong ETag, a
// GCS generation), and Pin makes a later ranged read fail with a
// precondition error (IsPreconditionFailed) if the object is no longer
// that version. "" means the store told none: no resume.

// Version is the version of the object r reads, or "".
func Version(r *blob.Reader) string {
	var s3out s3.GetObjectOutput
	if r.As(&s3out) {
		if etag := aws.ToString(s3out.ETag); !strings.HasPrefix(etag, "W/") {
			return etag
		}
		return ""
	}
	var gr *storage.Reader
	if r.As(&gr) && gr != nil && gr.Attrs.Generation != 0 {
		return strconv.FormatInt(gr.Attrs.Generation, 10)
	}
	var az azblobblob.DownloadStreamResponse
	if r.As(&az) && az.ETag != nil {
		if etag := string(*az.ETag); !strings.HasPrefix(etag, "W/") {
			return etag
		}
	}
	return ""
}

// Pin is the BeforeRead of a read that must get version (of Version) or
// fail: If-Match on S3 and Azure, the generation itself on GCS.
func Pin(version string) func(as func(any) bool) error {
	return func(as func(any) bool) error {
		if version == "" {
			return nil
		}
		var in *s3.GetObjectInput
		if as(&in) {
			in.IfMatch = aws.String(version)
			return nil
		}
		var obj **storage.ObjectHandle
		if as(&obj) {
			if gen, err := strconv.ParseInt(version, 10, 64); err == nil {
				*obj = (*obj).If(storage.Conditions{GenerationMatch: gen})
			}
			return nil
		}
		var az *azblobblob.DownloadStreamOptions
		if as(&az) {
			etag := azcore.ETag(version)
			if az.AccessConditions == nil {
				az.AccessConditions = &azblobblob.AccessConditions{}
			}
			if az.AccessConditions.ModifiedAccessConditions == nil {
				az.AccessConditions.ModifiedAccessConditions = &azblobblob.ModifiedAccessConditions{}
			}
			az.AccessConditions.ModifiedAccessConditions.IfMatch = &etag
		}
		return nil
	}
}
