package bucket

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"
)

// Error is a store's failure said in one line (Describe): not about the
// bytes of an object, so a gzip reader above a read does not call the
// stream corrupt, and never holding a credential.
type Error struct {
	msg  string
	code gcerrors.ErrorCode
}

func (e *Error) Error() string { return e.msg }

// Code is the portable kind of failure (gcerrors.NotFound, ...), Unknown
// when not told.
func (e *Error) Code() gcerrors.ErrorCode { return e.code }

// Op is what was being done when a store failed, named in a denied
// request's message as each cloud names it.
type Op int

const (
	OpRead Op = iota
	OpWrite
	OpList
	OpDelete
	OpStat
)

// name is op as the cloud of scheme calls it (an IAM policy names it so).
func (op Op) name(scheme string) string {
	var names [5]string
	switch scheme {
	case "gs":
		names = [...]string{"storage.objects.get", "storage.objects.create", "storage.objects.list", "storage.objects.delete", "storage.objects.get"}
	case "azblob":
		names = [...]string{"Get Blob", "Put Blob", "List Blobs", "Delete Blob", "Get Blob Properties"}
	default:
		names = [...]string{"GetObject", "PutObject", "ListObjectsV2", "DeleteObject", "HeadObject"}
	}
	return names[op]
}

// IsNotFound reports whether err says the object (or its bucket) is not
// there.
func IsNotFound(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.code == gcerrors.NotFound
	}
	return gcerrors.Code(err) == gcerrors.NotFound
}

// IsPreconditionFailed reports whether err is a conditional request's
// refusal: the object exists (a write with IfNotExist), or changed (a
// read pinned to a version).
func IsPreconditionFailed(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.code == gcerrors.FailedPrecondition
	}
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return true
	}
	switch apiCode(err) {
	case "PreconditionFailed", "ConditionNotMet", "BlobAlreadyExists", "ConditionalRequestConflict":
		return true
	}
	s := httpStatus(err)
	return s == http.StatusPreconditionFailed || s == http.StatusConflict && apiCode(err) == ""
}

// Describe says in one line what op on l failed on: no bucket, no key, a
// denied request (which operation, which bucket), expired or unknown
// credentials, or the store's own code and message; never a credential.
// The caller names the URL before it. An *Error is returned as it is.
func Describe(err error, op Op, l Location) error {
	var done *Error
	if err == nil || errors.As(err, &done) {
		return err
	}
	code := gcerrors.Code(err)
	e := func(format string, args ...any) error {
		return &Error{msg: fmt.Sprintf(format, args...), code: code}
	}
	container := "bucket"
	if l.Scheme == "azblob" {
		container = "container"
	}
	status := httpStatus(err)
	api := apiCode(err)
	switch {
	case api == "NoSuchBucket", api == "ContainerNotFound", errors.Is(err, storage.ErrBucketNotExist):
		return &Error{msg: fmt.Sprintf("no such %s %q", container, l.Bucket), code: gcerrors.NotFound}
	case api == "NoSuchKey", api == "NotFound", api == "BlobNotFound", errors.Is(err, storage.ErrObjectNotExist),
		code == gcerrors.NotFound, api == "" && status == http.StatusNotFound:
		return &Error{msg: fmt.Sprintf("no such key %q in %s %q", l.Key, container, l.Bucket), code: gcerrors.NotFound}
	case api == "InvalidAccessKeyId":
		return e("the store does not know the access key (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID or the profile")
	case api == "SignatureDoesNotMatch":
		return e("the request's signature does not match (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY or the profile")
	case api == "ExpiredToken", api == "TokenRefreshRequired", api == "ExpiredTokenException":
		return e("the credentials have expired (%s)", api)
	case api == "AuthenticationFailed", status == http.StatusUnauthorized:
		return e("the store refused the credentials (%s): check %s", orHTTP(api, status), credentialHint(l.Scheme))
	case api == "AccessDenied", api == "Forbidden", api == "AuthorizationFailure", api == "AuthorizationPermissionMismatch",
		code == gcerrors.PermissionDenied, api == "" && status == http.StatusForbidden:
		return e("access denied (%s on %s %q)", op.name(l.Scheme), container, l.Bucket)
	case api == "SlowDown", api == "ServerBusy", status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable:
		return e("the store is throttling requests (%s), still after retries with backoff", orHTTP(api, status))
	case api != "":
		msg := api
		if m := apiMessage(err); m != "" {
			msg += ": " + firstLine(m)
		}
		if status != 0 {
			msg += fmt.Sprintf(" (HTTP %d)", status)
		}
		return e("%s", msg)
	case status != 0:
		return e("HTTP %d %s", status, http.StatusText(status))
	}
	// Not an answer from the store: no credentials, a network error. The
	// SDKs' wrappers ("operation error S3: GetObject, ...") go.
	msg := firstLine(cause(err).Error())
	switch all := err.Error(); {
	case strings.Contains(all, "get credentials:"), strings.Contains(all, "failed to refresh cached credentials"):
		// The AWS chain found none: its message lists each place it
		// looked, at length.
		return e("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
	case strings.Contains(all, "DefaultAzureCredential"):
		return e("no Azure credentials: set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING")
	}
	return e("%s", msg)
}

func orHTTP(api string, status int) string {
	if api != "" {
		return api
	}
	return fmt.Sprintf("HTTP %d", status)
}

// cause takes the wrappers off a failure that is not the store's answer:
// gocloud's ("blob (key \"k\") (code=Unknown): ..."), the AWS SDK's
// operation and response errors.
func cause(err error) error {
	for {
		next := err
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			if errs := u.Unwrap(); len(errs) > 0 && errs[0] != nil {
				next = errs[0]
			}
		}
		var oe *smithy.OperationError
		if errors.As(next, &oe) && oe.Err != nil {
			next = oe.Err
		}
		var re *awshttp.ResponseError
		if errors.As(next, &re) && re.Err != nil {
			next = re.Err
		}
		var ue *url.Error
		if errors.As(next, &ue) {
			next = ue.Err // without the request's URL
		}
		if next == err {
			return err
		}
		err = next
	}
}

// Cause is the error under gocloud.dev/blob's wrapper, whose message
// would repeat the key: what a read that broke off says.
func Cause(err error) error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := u.Unwrap(); len(errs) > 0 && errs[0] != nil {
			return errs[0]
		}
	}
	return err
}

// apiCode is the store's error code of err ("NoSuchKey",
// "ContainerNotFound", a GCS reason), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) && len(ge.Errors) > 0 {
		switch r := ge.Errors[0].Reason; r {
		case "notFound", "forbidden", "required", "conditionNotMet":
			// Told by the status below, as the other stores' are.
		default:
			return r
		}
	}
	return ""
}

// apiMessage is the store's message for err, or "".
func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Message
	}
	return ""
}

// httpStatus is the HTTP status of the store's answer err is, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	var ae *azcore.ResponseError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}
