package bulkimport

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// An export under a bucket's prefix reads as the same export in a folder:
// its manifest.json when there is one (its relative urls objects of the
// prefix, none outside it), else its objects named as a folder's files,
// each input a URL of the same store.
func TestReadPrefix(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	put := func(key, data string) {
		if err := b.WriteAll(ctx, key, []byte(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	at := func(key string) bucket.Location {
		return bucket.Location{Scheme: "s3", Bucket: "b", Key: key, Endpoint: "http://127.0.0.1:9000"}
	}
	const q = "?endpoint=http%3A%2F%2F127.0.0.1%3A9000"
	urls := func(ins []Input) (out []string) {
		for _, in := range ins {
			out = append(out, in.ResourceType+" "+in.URL)
		}
		return out
	}

	// With a manifest.json.
	put("hl7/manifest.json", `{"transactionTime":"2026-11-29T02:00:00Z","request":"x","requiresAccessToken":false,
		"output":[{"type":"Patient","url":"Patient.ndjson"},{"type":"Observation","url":"data/Observation.000.ndjson.gz"}],
		"deleted":[{"type":"Bundle","url":"deleted.Patient.ndjson"}],"error":[]}`)
	m, raw, err := readPrefix(ctx, b, at("hl7/"), false, nil)
	if err != nil || raw == nil || m.Path != "s3://b/hl7/manifest.json"+q || m.Dir != "s3://b/hl7/"+q || !m.FHIR || !m.FromExport {
		t.Fatalf("hl7: %+v, %v", m, err)
	}
	if got, want := urls(m.Inputs), []string{"Patient s3://b/hl7/Patient.ndjson" + q, "Observation s3://b/hl7/data/Observation.000.ndjson.gz" + q}; !reflect.DeepEqual(got, want) {
		t.Errorf("hl7 inputs %v, want %v", got, want)
	}
	if got, want := urls(m.Deleted), []string{"Bundle s3://b/hl7/deleted.Patient.ndjson" + q}; !reflect.DeepEqual(got, want) {
		t.Errorf("hl7 deleted %v, want %v", got, want)
	}

	// A url leaving the prefix: refused, as outside a folder is.
	put("leak/manifest.json", `{"output":[{"type":"Patient","url":"../hl7/Patient.ndjson"}]}`)
	_, _, err = readPrefix(ctx, b, at("leak/"), false, nil)
	var me *ManifestError
	if !errors.As(err, &me) || !me.Outside || err.Error() != "manifest: output[0].url ../hl7/Patient.ndjson: s3://b/hl7/Patient.ndjson is outside the manifest's folder s3://b/leak/" {
		t.Errorf("leak: %v", err)
	}
	if m, _, err := readPrefix(ctx, b, at("leak/"), true, nil); err != nil || m.Inputs[0].URL != "s3://b/hl7/Patient.ndjson"+q {
		t.Errorf("leak allowed: %+v, %v", m, err)
	}

	// Half an export: fhirbulk's marker and no manifest yet. Not read as
	// a folder (its files would look complete).
	put("half/.fhirbulk-export", `{"started":"2026-12-03T10:00:00Z"}`)
	put("half/Patient.ndjson", "{}\n")
	var ue *UnfinishedError
	if _, _, err := readPrefix(ctx, b, at("half/"), false, nil); !errors.As(err, &ue) ||
		err.Error() != "s3://b/half/: an export is being written there (or was, by a run that was killed): no manifest.json yet" {
		t.Errorf("half: %v", err)
	}
	put("half/manifest.json", `{"output":[{"type":"Patient","url":"Patient.ndjson"}]}`)
	if _, _, err := readPrefix(ctx, b, at("half/"), false, nil); err != nil {
		t.Errorf("half, once its manifest is there: %v", err)
	}

	// Without a manifest: the names tell the types; the log, other
	// objects and deeper prefixes are not data.
	for _, k := range []string{"flat/2.Patient.ndjson", "flat/1.Patient.ndjson", "flat/Observation.000.ndjson.gz", "flat/deleted.Patient.ndjson",
		"flat/log.ndjson", "flat/README.txt", "flat/sub/Condition.ndjson", "flat/"} {
		put(k, "{}\n")
	}
	m, raw, err = readPrefix(ctx, b, at("flat/"), false, nil)
	if err != nil || raw != nil || m.Path != "s3://b/flat/"+q || m.Dir != m.Path || !m.FHIR || !m.FromExport {
		t.Fatalf("flat: %+v, %v", m, err)
	}
	want := []string{"Patient s3://b/flat/1.Patient.ndjson" + q, "Patient s3://b/flat/2.Patient.ndjson" + q, "Observation s3://b/flat/Observation.000.ndjson.gz" + q}
	if got := urls(m.Inputs); !reflect.DeepEqual(got, want) {
		t.Errorf("flat inputs %v, want %v", got, want)
	}
	if got := urls(m.Deleted); !reflect.DeepEqual(got, []string{"Patient s3://b/flat/deleted.Patient.ndjson" + q}) {
		t.Errorf("flat deleted %v", got)
	}

	// Refused, as in a folder: names that tell no type, a prefix named as
	// a data file, nothing at all.
	put("mixed/Patient.ndjson", "{}\n")
	put("mixed/data.ndjson.gz", "{}\n")
	put("mixed/error.ndjson", "{}\n")
	put("deep/Patient.ndjson/part1", "{}\n")
	for prefix, msg := range map[string]string{
		"mixed/": "manifest: s3://b/mixed/: the type of data.ndjson.gz, error.ndjson cannot be told from its name (want Type.ndjson, Type.000.ndjson, Type_1.ndjson or 1.Type.ndjson)",
		"deep/":  "manifest: s3://b/deep/: not an object but a prefix (a folder): Patient.ndjson/",
		"none/":  "manifest: s3://b/none/: no manifest.json and no .ndjson files",
	} {
		_, _, err := readPrefix(ctx, b, at(prefix), false, nil)
		if !errors.As(err, &me) || err.Error() != msg {
			t.Errorf("%s: %v; want %s", prefix, err, msg)
		}
	}
	// A key that named no object, and nothing under it either: what the
	// caller says of it.
	missing := errors.New("manifest s3://b/none: no such key")
	if _, _, err := readPrefix(ctx, b, at("none/"), false, missing); err != missing {
		t.Errorf("missing: %v", err)
	}

	// A manifest object, by its own URL, resolves against its prefix.
	data, err := readObject(ctx, b, at("hl7/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, _, err = parseObject(data, at("hl7/manifest.json"), false)
	if err != nil || m.Inputs[0].URL != "s3://b/hl7/Patient.ndjson"+q {
		t.Errorf("object: %+v, %v", m, err)
	}
	if _, err := readObject(ctx, b, at("hl7/nope.json")); !bucket.IsNotFound(err) || err.Error() != `no such key "hl7/nope.json" in bucket "b"` {
		t.Errorf("nope: %v", err)
	}
}

// A bucket export's import id is named by its prefix (or bucket), as a
// folder's is by the folder, without the query; exportName shows the
// prefix of a manifest.json.
func TestBucketNames(t *testing.T) {
	db := pg.Identity{}
	for path, name := range map[string]string{
		"s3://b/exports/2026-12-01/":              "2026-12-01-",
		"s3://b/exports/2026-12-01/manifest.json": "2026-12-01-",
		"gs://b/full":          "full-",
		"azblob://c/":          "c-",
		"s3://b/manifest.json": "b-",
		"s3://b/exp/?endpoint=http%3A%2F%2Fh%3A1": "exp-",
	} {
		if id := IDFor(path, db); !strings.HasPrefix(id, name) || len(id) != len(name)+8 {
			t.Errorf("IDFor(%s) = %s, want %s…", path, id, name)
		}
	}
	if IDFor("s3://b/exp/", db) == IDFor("s3://c/exp/", db) {
		t.Error("two buckets, one id")
	}
	for path, want := range map[string]string{
		"s3://b/exp/manifest.json?endpoint=http%3A%2F%2Fh%3A1": "s3://b/exp/",
		"s3://b/manifest.json":                                 "s3://b/",
		"s3://b/exp/":                                          "s3://b/exp/",
		"/data/exp/manifest.json":                              "/data/exp",
	} {
		if got := exportName(path); got != want {
			t.Errorf("exportName(%s) = %s, want %s", path, got, want)
		}
	}
}
