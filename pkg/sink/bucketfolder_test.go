package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
)

// keys lists every object in b, sorted.
func keys(t *testing.T, b *blob.Bucket) []string {
	t.Helper()
	var out []string
	it := b.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, obj.Key)
	}
	slices.Sort(out)
	return out
}

func prefix(key string) bucket.Location {
	return bucket.Location{Scheme: "s3", Bucket: "b", Key: key}
}

// writeFile writes data as name in f and commits it.
func writeFile(t *testing.T, f Folder, name, data string) {
	t.Helper()
	d, err := f.Create(name, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(d, data); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
}

// An export to a prefix: the marker while it is written, the manifest
// last, the marker gone after; a second export without force is refused.
func TestBucketFolderPublish(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/" + Marker}) {
		t.Errorf("after open: %q", got)
	}
	writeFile(t, f, "Patient.ndjson", "{}\n")
	if ok, _ := b.Exists(ctx, "exp/manifest.json"); ok {
		t.Error("manifest before Commit")
	}
	if err := f.Commit([]byte(`{"output":[]}`)); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/Patient.ndjson", "exp/manifest.json"}) {
		t.Errorf("after commit: %q", got)
	}
	if _, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{}); !errors.Is(err, ErrExists) || err.Error() != "output s3://b/exp/ already exists" {
		t.Errorf("second export: %v", err)
	}
	// Another prefix that merely shares the name's start is not in the way.
	if g, err := newBucketFolder(ctx, b, prefix("ex/"), FolderOptions{}); err != nil {
		t.Errorf("export to ex/: %v", err)
	} else {
		g.Abort()
	}
}

// A failed export deletes what it wrote, the marker too: nothing is left.
func TestBucketFolderAbort(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "Patient.ndjson", "{}\n")
	d, _ := f.Create("Observation.ndjson", false)
	d.Write([]byte("{}\n"))
	d.Abort() // an upload in flight
	f.Abort()
	if got := keys(t, b); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}

// A killed run leaves its marker and objects: the next export names them
// and does not start; with force it replaces them, deleting the strays.
func TestBucketFolderLeftovers(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	b.WriteAll(ctx, "exp/"+Marker, []byte(`{"started":"2026-12-03T10:00:00Z","host":"h1","pid":42}`), nil)
	b.WriteAll(ctx, "exp/Old.ndjson", []byte("{}\n"), nil)
	_, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{})
	want := "output s3://b/exp/ holds an unfinished export (started 2026-12-03T10:00:00Z on h1, process 42): --force deletes it and writes a new one"
	if !errors.Is(err, ErrUnfinished) || err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "Patient.ndjson", "{}\n")
	if err := f.Commit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/Patient.ndjson", "exp/manifest.json"}) {
		t.Errorf("after forced export: %q", got)
	}
}

// Force over an earlier export: its manifest goes first (it must not list
// objects being overwritten), its strays at Commit. Objects that are not
// an export are never replaced.
func TestBucketFolderForce(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	b.WriteAll(ctx, "exp/manifest.json", []byte("{}"), nil)
	b.WriteAll(ctx, "exp/Old.ndjson", []byte("{}\n"), nil)
	b.WriteAll(ctx, "exp/Patient.ndjson", []byte("old\n"), nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Exists(ctx, "exp/manifest.json"); !ok {
		t.Error("the old manifest is gone before anything of the new export is written")
	}
	d, err := f.Create("Patient.ndjson", false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Exists(ctx, "exp/manifest.json"); ok {
		t.Error("the old manifest is still there while the new export is written")
	}
	d.Write([]byte("new\n"))
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/Patient.ndjson", "exp/manifest.json"}) {
		t.Errorf("after forced export: %q", got)
	}
	if data, _ := b.ReadAll(ctx, "exp/Patient.ndjson"); string(data) != "new\n" {
		t.Errorf("Patient.ndjson = %q", data)
	}
	// A forced export that fails: no manifest, and the marker stays beside
	// what is left of the earlier one, so that --force can replace it.
	g, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, g, "Observation.ndjson", "{}\n")
	g.Abort()
	if got := keys(t, b); !slices.Equal(got, []string{"exp/" + Marker, "exp/Patient.ndjson"}) {
		t.Errorf("after a failed forced export: %q", got)
	}
	if _, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{}); !errors.Is(err, ErrUnfinished) {
		t.Errorf("after a failed forced export, without force: %v", err)
	}
	h, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatalf("after a failed forced export, with force: %v", err)
	}
	h.Abort()
	b.WriteAll(ctx, "home/notes.txt", []byte("mine"), nil)
	if _, err := newBucketFolder(ctx, b, prefix("home/"), FolderOptions{Force: true}); !errors.Is(err, ErrNotExport) {
		t.Errorf("forced over a prefix that is not an export: %v", err)
	}
	if _, err := newBucketFolder(ctx, b, prefix("home/"), FolderOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("over a prefix that is not an export: %v", err)
	}
}

// The manifest is written only if absent: an export that finds one
// written meanwhile (a second writer without force) fails and leaves the
// other's in place.
func TestBucketFolderManifestRace(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "Patient.ndjson", "{}\n")
	b.WriteAll(ctx, "exp/manifest.json", []byte("theirs"), nil)
	if err := f.Commit([]byte("ours")); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit: %v", err)
	}
	if data, _ := b.ReadAll(ctx, "exp/manifest.json"); string(data) != "theirs" {
		t.Errorf("manifest = %q", data)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/manifest.json"}) {
		t.Errorf("left %q", got)
	}
}

// Names that are not a plain file's are refused.
func TestBucketFolderNames(t *testing.T) {
	b := memblob.OpenBucket(nil)
	f, err := newBucketFolder(context.Background(), b, prefix(""), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	for _, name := range []string{"", Manifest, Marker, "a/b", "..", `a\b`} {
		if _, err := f.Create(name, false); err == nil || !strings.Contains(err.Error(), "bad file name") {
			t.Errorf("Create(%q): %v", name, err)
		}
	}
}

// An object output: nothing appears until Commit; Abort leaves nothing;
// a conditional write refuses an object that appeared meanwhile.
func TestObjectUpload(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	loc := prefix("out/Patient.ndjson")
	start := func(force bool) *Sink {
		o, err := startUpload(ctx, b, loc, false, force, Upload{PartSize: MinPartSize, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		s := &Sink{obj: o, path: loc.String()}
		if err := s.layer(o); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start(false)
	s.Write([]byte("{}\n"))
	if ok, _ := b.Exists(ctx, loc.Key); ok {
		t.Error("object visible before Commit")
	}
	s.Abort()
	if got := keys(t, b); len(got) != 0 {
		t.Errorf("Abort left %q", got)
	}
	s = start(false)
	s.Write([]byte("{}\n"))
	b.WriteAll(ctx, loc.Key, []byte("theirs"), nil)
	if err := s.Commit(); !errors.Is(err, ErrExists) || err.Error() != "output s3://b/out/Patient.ndjson already exists" {
		t.Errorf("Commit over an object that appeared: %v", err)
	}
	s = start(true)
	s.Write([]byte("ours\n"))
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if data, _ := b.ReadAll(ctx, loc.Key); string(data) != "ours\n" {
		t.Errorf("object = %q", data)
	}
}

// A forced export that fails before it writes anything (no database, a
// signing check) leaves the earlier export as it was, and no marker.
func TestBucketFolderForceEarlyFailure(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	b.WriteAll(ctx, "exp/manifest.json", []byte("{}"), nil)
	b.WriteAll(ctx, "exp/Patient.ndjson", []byte("old\n"), nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if got := keys(t, b); !slices.Equal(got, []string{"exp/Patient.ndjson", "exp/manifest.json"}) {
		t.Errorf("after an early failure: %q", got)
	}
}

// --force takes a prefix over from a run that is still writing (on
// another host, or stuck): the run it was taken from then publishes
// nothing and deletes nothing of what is now the other's.
func TestBucketFolderTakenOver(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	first, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, first, "Patient.ndjson", "first\n")
	// Another host's marker, as far as the second run can tell.
	data, _ := b.ReadAll(ctx, "exp/"+Marker)
	b.WriteAll(ctx, "exp/"+Marker, []byte(strings.Replace(string(data), `"host":"`, `"host":"elsewhere-`, 1)), nil)
	second, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, second, "Patient.ndjson", "second\n")
	if err := first.Commit([]byte("first")); err == nil || !strings.Contains(err.Error(), "another export took the prefix over") {
		t.Errorf("the first run's Commit: %v", err)
	}
	first.Abort()
	if err := second.Commit([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); !slices.Equal(got, []string{"exp/Patient.ndjson", "exp/manifest.json"}) {
		t.Errorf("after the takeover: %q", got)
	}
	if data, _ := b.ReadAll(ctx, "exp/Patient.ndjson"); string(data) != "second\n" {
		t.Errorf("Patient.ndjson = %q", data)
	}
}

// A run of this host that is alive (this test's own process, under
// another pid in the marker: the parent) is never taken over, even with
// force.
func TestBucketFolderLiveHere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no way to tell a live process from its pid here")
	}
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	host, _ := os.Hostname()
	b.WriteAll(ctx, "exp/"+Marker, []byte(fmt.Sprintf(`{"run":"x","started":"2026-12-03T10:00:00Z","host":%q,"pid":%d}`, host, os.Getppid())), nil)
	_, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err == nil || !strings.Contains(err.Error(), "is being written by process") {
		t.Errorf("forced over a live run of this host: %v", err)
	}
}

// An earlier export of more files than one page of a listing is still
// known by its manifest; --force deletes only what is directly under the
// prefix and named as an export's files are: not a nested export, not
// other objects.
func TestBucketFolderForceLarge(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	for i := range 1200 {
		b.WriteAll(ctx, fmt.Sprintf("exp/Observation.%04d.ndjson", i), []byte("{}\n"), nil)
	}
	b.WriteAll(ctx, "exp/manifest.json", []byte("{}"), nil)
	b.WriteAll(ctx, "exp/2026-12-01/Patient.ndjson", []byte("{}\n"), nil)
	b.WriteAll(ctx, "exp/2026-12-01/manifest.json", []byte("{}"), nil)
	b.WriteAll(ctx, "exp/notes.txt", []byte("mine"), nil)
	f, err := newBucketFolder(ctx, b, prefix("exp/"), FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "Patient.ndjson", "{}\n")
	if err := f.Commit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	want := []string{"exp/2026-12-01/Patient.ndjson", "exp/2026-12-01/manifest.json", "exp/Patient.ndjson", "exp/manifest.json", "exp/notes.txt"}
	if got := keys(t, b); !slices.Equal(got, want) {
		t.Errorf("after the forced export: %q", got)
	}
}
