package bucket

import (
	"context"
	"reflect"
	"testing"

	"gocloud.dev/blob/memblob"
)

// A URL made of a Location parses back to it: the key escaped where a URL
// needs it, endpoint= and region= kept.
func TestLocationURL(t *testing.T) {
	for _, l := range []Location{
		{Scheme: "s3", Bucket: "b", Key: "exp/Patient.ndjson"},
		{Scheme: "s3", Bucket: "b", Key: "exp/a b?c#d%e.ndjson", Endpoint: "http://127.0.0.1:9000", Region: "eu-west-1"},
		{Scheme: "gs", Bucket: "b", Key: "exp/"},
		{Scheme: "azblob", Bucket: "c", Key: ""},
	} {
		u := l.URL()
		back, err := Parse(u)
		if err != nil || back != l {
			t.Errorf("%+v: URL %s parses as %+v, %v", l, u, back, err)
		}
	}
	l := Location{Scheme: "s3", Bucket: "b", Key: "k", Endpoint: "http://h:1"}
	if got, want := l.URL(), "s3://b/k?endpoint=http%3A%2F%2Fh%3A1"; got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
}

// List gives a prefix's entries as a folder's: objects and deeper
// prefixes directly under it, named relative to it; not the prefix's own
// empty object, nor what lies deeper or beside it.
func TestList(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	for _, k := range []string{"exp/", "exp/Patient.ndjson", "exp/deleted.Patient.ndjson.gz", "exp/sub/Observation.ndjson",
		"exp/Condition.ndjson/x", "exp2/Patient.ndjson", "top.ndjson"} {
		if err := b.WriteAll(ctx, k, []byte("{}\n"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string][]Entry{
		"exp/":  {{Name: "Condition.ndjson", Dir: true}, {Name: "Patient.ndjson", Size: 3}, {Name: "deleted.Patient.ndjson.gz", Size: 3}, {Name: "sub", Dir: true}},
		"exp":   {{Name: "Condition.ndjson", Dir: true}, {Name: "Patient.ndjson", Size: 3}, {Name: "deleted.Patient.ndjson.gz", Size: 3}, {Name: "sub", Dir: true}},
		"":      {{Name: "exp", Dir: true}, {Name: "exp2", Dir: true}, {Name: "top.ndjson", Size: 3}},
		"none/": nil,
	} {
		got, err := List(ctx, b, Location{Scheme: "s3", Bucket: "b", Key: prefix})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("List(%q) = %+v, %v; want %+v", prefix, got, err, want)
		}
	}
}
