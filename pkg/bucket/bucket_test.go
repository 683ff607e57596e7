package bucket

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for raw, want := range map[string]Location{
		"s3://b/k":                                               {Scheme: "s3", Bucket: "b", Key: "k"},
		" S3://my.bucket/a/b/c.ndjson":                           {Scheme: "s3", Bucket: "my.bucket", Key: "a/b/c.ndjson"},
		"s3://b/a%20b.ndjson":                                    {Scheme: "s3", Bucket: "b", Key: "a b.ndjson"},
		"s3://b/k?endpoint=http://127.0.0.1:9000":                {Scheme: "s3", Bucket: "b", Key: "k", Endpoint: "http://127.0.0.1:9000"},
		"s3://b/k?endpoint=https%3A%2F%2Fminio.example&region=x": {Scheme: "s3", Bucket: "b", Key: "k", Endpoint: "https://minio.example", Region: "x"},
		"gs://b/export/":                                         {Scheme: "gs", Bucket: "b", Key: "export/"},
		"azblob://c":                                             {Scheme: "azblob", Bucket: "c"},
		"AZBLOB://c/x/Patient.ndjson.gz":                         {Scheme: "azblob", Bucket: "c", Key: "x/Patient.ndjson.gz"},
	} {
		got, err := Parse(raw)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for raw, want := range map[string]string{
		"s3:///k":                             "no bucket: want s3://BUCKET/KEY",
		"s3://b":                              "no key: want s3://BUCKET/KEY",
		"s3://b/":                             "no key: want s3://BUCKET/KEY",
		"s3://b/dir/":                         "names a folder (a key ending in /): want s3://BUCKET/KEY",
		"s3://b:9000/k":                       "a bucket name has no port (an S3-compatible store's address goes in endpoint= or AWS_ENDPOINT_URL)",
		"s3://AKIA:SECRET@b/k":                "no user or password in a bucket URL: credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE)",
		"s3://b/k#frag":                       "a key has no fragment (write # as %23)",
		"s3://b/k?X-Amz-Signature=SECRET":     "a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)",
		"s3://b/k?endpoint=127.0.0.1:9000":    "endpoint= wants http(s)://HOST[:PORT] (no user info, no query)",
		"s3://b/k?endpoint=http://u:SECRET@h": "endpoint= wants http(s)://HOST[:PORT] (no user info, no query)",
		"s3://b/k?endpoint=http://h&endpoint=http://i": "endpoint= given 2 times",
		"s3://b/k?region=": "region= is empty",
		"s3://b/k?a=%zz":   "a query string that does not parse",
		"s3://b/a/../k":    "a key with an empty, . or .. segment",
		"s3://b/a//k":      "a key with an empty, . or .. segment",
		"gs://b:1/k":       "a bucket name has no port (an emulator's address goes in STORAGE_EMULATOR_HOST)",
		"gs://b/k?x=1":     "a query parameter in a gs URL (a pre-signed URL is an https:// URL)",
		"azblob:///k":      "no bucket: want azblob://BUCKET/KEY",
		"http://b/k":       "not a URL: want s3://, gs:// or azblob://BUCKET/KEY",
	} {
		_, err := ParseObject(raw)
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q): %v, want %s", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Parse(%q) leaks: %v", raw, err)
		}
	}
}

func TestLocation(t *testing.T) {
	l, _ := Parse("s3://b/export?endpoint=http://h:1")
	if got := l.Child("manifest.json").String(); got != "s3://b/export/manifest.json" {
		t.Errorf("Child = %s", got)
	}
	if l.Prefix() {
		t.Errorf("%s is not a prefix", l)
	}
	r, _ := Parse("gs://b")
	if !r.Prefix() || r.Child("x").Key != "x" || r.String() != "gs://b/" {
		t.Errorf("root: %+v %s", r, r)
	}
	for raw, want := range map[string]bool{"s3://b/k": true, " GS://b": true, "azblob://c/": true, "https://x/y": false, "s3:b": false, "/tmp/s3://x": false} {
		if Is(raw) != want {
			t.Errorf("Is(%q) = %v", raw, !want)
		}
	}
}
