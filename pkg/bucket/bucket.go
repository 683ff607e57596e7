// Package bucket is the one home of object storage: what a bucket URL
// names (s3://, gs://, azblob://), how its bucket is opened with the
// cloud's standard credentials, how a read is pinned to one version of an
// object, and what a failure says in one line. Sources (pkg/source) read
// objects through it; sinks (pkg/sink) write, list and delete through it.
//
// Every store is reached through gocloud.dev/blob, which puts S3 (and any
// S3-compatible store), Google Cloud Storage and Azure Blob Storage
// behind one API with streaming multipart writes, ranged reads and
// conditional writes. Credentials come only from each cloud's standard
// chain (environment, profile files, instance or workload identity),
// never from the URL:
//
//   - s3: the AWS SDK's (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...); an
//     S3-compatible store's address from the URL's endpoint=, else
//     AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, and then path-style
//     requests and checksums only when required (recent AWS SDKs send CRC32
//     checksums by default, which many S3-compatible stores refuse);
//   - gs: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
//     gcloud's, the metadata server); STORAGE_EMULATOR_HOST for an
//     emulator, then without credentials;
//   - azblob: AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY, or
//     AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_CONNECTION_STRING, else
//     Azure's default credential chain; AZURE_STORAGE_DOMAIN,
//     AZURE_STORAGE_PROTOCOL and AZURE_STORAGE_IS_LOCAL_EMULATOR for
//     Azurite.
package bucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcp"
)

// Schemes are the URL schemes of object stores.
var Schemes = []string{"s3", "gs", "azblob"}

// Is reports whether raw is a bucket URL ("s3://…", "gs://…",
// "azblob://…", in any case).
func Is(raw string) bool {
	scheme, _, ok := strings.Cut(strings.TrimSpace(raw), "://")
	return ok && IsScheme(scheme)
}

// IsScheme reports whether scheme (any case) is an object store's.
func IsScheme(scheme string) bool {
	for _, s := range Schemes {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// Location is what a bucket URL names: an object (Key), or a prefix (Key
// "" or ending in "/", a folder's worth of objects).
type Location struct {
	Scheme   string // "s3", "gs" or "azblob"
	Bucket   string // the bucket (Azure: the container)
	Key      string // the object's key, or a prefix
	Endpoint string // s3: from endpoint=; "" for the environment's or AWS's
	Region   string // s3: from region=
}

// Prefix reports whether l names a prefix (a folder) rather than an object.
func (l Location) Prefix() bool { return l.Key == "" || strings.HasSuffix(l.Key, "/") }

// String is the URL as it may be shown: scheme://BUCKET/KEY, without the
// query string.
func (l Location) String() string { return l.Scheme + "://" + l.Bucket + "/" + l.Key }

// Child is the object name in the prefix l (a folder's file).
func (l Location) Child(name string) Location {
	c := l
	c.Key = l.Dir() + name
	return c
}

// Dir is l's prefix with its trailing "/" ("" for the bucket's root).
func (l Location) Dir() string {
	if l.Key == "" || strings.HasSuffix(l.Key, "/") {
		return l.Key
	}
	return l.Key + "/"
}

// Parse reads SCHEME://BUCKET[/KEY][?endpoint=URL&region=REGION] (the
// parameters for s3 only). Its errors never quote the query string (a
// parameter's name at most): it may be a pre-signed URL's signature.
func Parse(raw string) (Location, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || !IsScheme(u.Scheme) || u.Opaque != "" {
		return Location{}, errors.New("not a URL: want s3://, gs:// or azblob://BUCKET/KEY")
	}
	scheme := strings.ToLower(u.Scheme)
	want := "want " + scheme + "://BUCKET/KEY"
	if u.User != nil {
		return Location{}, errors.New("no user or password in a bucket URL: credentials come from the environment (" + credentialHint(scheme) + ")")
	}
	if u.Host == "" {
		return Location{}, errors.New("no bucket: " + want)
	}
	if u.Port() != "" || strings.Contains(u.Host, ":") {
		return Location{}, errors.New("a bucket name has no port (" + endpointHint(scheme) + ")")
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		return Location{}, errors.New("a key has no fragment (write # as %23)")
	}
	l := Location{Scheme: scheme, Bucket: u.Host, Key: strings.TrimPrefix(u.Path, "/")}
	if strings.Contains(l.Key, "//") || path.Clean("/"+l.Key) != "/"+strings.TrimSuffix(l.Key, "/") && l.Key != "" {
		return Location{}, errors.New("a key with an empty, . or .. segment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Location{}, errors.New("a query string that does not parse")
	}
	for name, vs := range q {
		if scheme != "s3" {
			return Location{}, fmt.Errorf("a query parameter in a %s URL (a pre-signed URL is an https:// URL)", scheme)
		}
		if len(vs) > 1 && (name == "endpoint" || name == "region") {
			return Location{}, fmt.Errorf("%s= given %d times", name, len(vs))
		}
		switch name {
		case "endpoint":
			e, err := url.Parse(vs[0])
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil || e.RawQuery != "" {
				return Location{}, errors.New("endpoint= wants http(s)://HOST[:PORT] (no user info, no query)")
			}
			l.Endpoint = vs[0]
		case "region":
			if vs[0] == "" {
				return Location{}, errors.New("region= is empty")
			}
			l.Region = vs[0]
		default:
			// Not named: it may be a pre-signed URL's signature.
			return Location{}, errors.New("a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)")
		}
	}
	return l, nil
}

// ParseObject is Parse for a URL that must name an object, not a prefix.
func ParseObject(raw string) (Location, error) {
	l, err := Parse(raw)
	if err != nil {
		return l, err
	}
	switch {
	case l.Key == "":
		return Location{}, errors.New("no key: want " + l.Scheme + "://BUCKET/KEY")
	case strings.HasSuffix(l.Key, "/"):
		return Location{}, errors.New("names a folder (a key ending in /): want " + l.Scheme + "://BUCKET/KEY")
	}
	return l, nil
}

// credentialHint says where a scheme's credentials come from.
func credentialHint(scheme string) string {
	switch scheme {
	case "gs":
		return "GOOGLE_APPLICATION_CREDENTIALS"
	case "azblob":
		return "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or AZURE_STORAGE_CONNECTION_STRING"
	}
	return "AWS_ACCESS_KEY_ID, AWS_PROFILE"
}

// endpointHint says where a scheme's endpoint comes from.
func endpointHint(scheme string) string {
	switch scheme {
	case "gs":
		return "an emulator's address goes in STORAGE_EMULATOR_HOST"
	case "azblob":
		return "Azurite's address goes in AZURE_STORAGE_DOMAIN"
	}
	return "an S3-compatible store's address goes in endpoint= or AWS_ENDPOINT_URL"
}

// Options tunes how a bucket is opened.
type Options struct {
	// Tries is how many times the cloud's SDK tries a request (S3; the
	// GCS and Azure clients keep their own retry policies), 0 for its
	// default.
	Tries int
}

// S3Endpoint is the endpoint an s3 URL goes to: its endpoint=, else the
// AWS SDKs' standard variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL);
// "" is AWS itself.
func S3Endpoint(l Location) string {
	if l.Endpoint != "" {
		return l.Endpoint
	}
	if e := os.Getenv("AWS_ENDPOINT_URL_S3"); e != "" {
		return e
	}
	return os.Getenv("AWS_ENDPOINT_URL")
}

// Open opens l's bucket. Close it when done.
func Open(ctx context.Context, l Location, opts Options) (*blob.Bucket, error) {
	switch l.Scheme {
	case "s3":
		return openS3(ctx, l, opts)
	case "gs":
		return openGCS(ctx, l)
	case "azblob":
		// gocloud's own opener, configured from azureblob's documented
		// variables on first use.
		b, err := blob.DefaultURLMux().OpenBucketURL(ctx, &url.URL{Scheme: azureblob.Scheme, Host: l.Bucket})
		switch {
		case err != nil && strings.Contains(err.Error(), "AccountName is required"):
			return nil, &Error{msg: "no Azure storage account: set AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN), or AZURE_STORAGE_CONNECTION_STRING"}
		case err != nil:
			return nil, &Error{msg: "Azure configuration: " + firstLine(err.Error())}
		}
		return b, nil
	}
	return nil, fmt.Errorf("not a bucket URL scheme: %q", l.Scheme)
}

// openS3 opens an S3 bucket: the AWS SDK's default configuration
// (credentials, region, profile), and for any endpoint but AWS's
// path-style addressing (http://HOST/BUCKET/KEY: an S3-compatible store
// seldom has a DNS name per bucket) and checksums only when required.
func openS3(ctx context.Context, l Location, opts Options) (*blob.Bucket, error) {
	endpoint := S3Endpoint(l)
	// The SDK's own log lines ("WARN falling back to IMDSv1") would go to
	// stderr between ours: errors come back as errors, said once.
	lo := []func(*config.LoadOptions) error{config.WithLogger(logging.Nop{})}
	if l.Region != "" {
		lo = append(lo, config.WithRegion(l.Region))
	}
	if endpoint != "" {
		lo = append(lo,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		// A broken profile file, say: its message names the file, not a secret.
		return nil, &Error{msg: "AWS configuration: " + firstLine(err.Error())}
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // any will do for an S3-compatible store
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		if opts.Tries > 0 {
			o.RetryMaxAttempts = opts.Tries
		}
		o.APIOptions = append(o.APIOptions, recordUploads)
	})
	return s3blob.OpenBucket(ctx, client, l.Bucket, &s3blob.Options{
		RequestChecksumCalculation: cfg.RequestChecksumCalculation,
	})
}

// openGCS opens a Cloud Storage bucket with Application Default
// Credentials, or without any against an emulator (STORAGE_EMULATOR_HOST).
// The credentials' service account, when it has a key, signs URLs.
func openGCS(ctx context.Context, l Location) (*blob.Bucket, error) {
	if os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		return gcsblob.OpenBucket(ctx, gcp.NewAnonymousHTTPClient(gcp.DefaultTransport()), l.Bucket, &gcsblob.Options{})
	}
	creds, err := gcp.DefaultCredentials(ctx)
	if err != nil {
		return nil, &Error{msg: "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run gcloud auth application-default login"}
	}
	client, err := gcp.NewHTTPClient(gcp.DefaultTransport(), gcp.CredentialsTokenSource(creds))
	if err != nil {
		return nil, &Error{msg: "Google credentials: " + firstLine(err.Error())}
	}
	var key struct {
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	_ = json.Unmarshal(creds.JSON, &key) // none: URLs are not signed
	return gcsblob.OpenBucket(ctx, client, l.Bucket, &gcsblob.Options{GoogleAccessID: key.ClientEmail, PrivateKey: []byte(key.PrivateKey)})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
