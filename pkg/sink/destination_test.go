package sink

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// destKind opens one kind of file Destination in dir and says where its
// content appears once committed (readBack reads it, or fails).
type destKind struct {
	name string
	open func(t *testing.T, dir string) (d Destination, publish func() error, final string)
}

var destKinds = []destKind{
	{"file", func(t *testing.T, dir string) (Destination, func() error, string) {
		p := filepath.Join(dir, "out.ndjson")
		d, err := Open(Options{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		return d, func() error { return nil }, p
	}},
	{"gzip file", func(t *testing.T, dir string) (Destination, func() error, string) {
		p := filepath.Join(dir, "out.ndjson.gz")
		d, err := Open(Options{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		return d, func() error { return nil }, p
	}},
	{"folder file", func(t *testing.T, dir string) (Destination, func() error, string) {
		f, err := OpenFolder(filepath.Join(dir, "export"), FolderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Abort)
		d, err := f.Create("Patient.ndjson", false)
		if err != nil {
			t.Fatal(err)
		}
		return d, func() error { return f.Commit([]byte("{}\n")) }, filepath.Join(dir, "export", "Patient.ndjson")
	}},
}

func readBack(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil || !strings.HasSuffix(path, ".gz") {
		return string(data), err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	plain, err := io.ReadAll(zr)
	return string(plain), err
}

// Each file Destination: nothing visible while written; Commit makes it
// visible, complete; Abort (also after a write that failed) leaves nothing
// in the folder; Abort after Commit changes nothing.
func TestDestinationContract(t *testing.T) {
	for _, k := range destKinds {
		t.Run(k.name+"/commit", func(t *testing.T) {
			dir := t.TempDir()
			d, publish, final := k.open(t, dir)
			d.Write([]byte("line 1\nline 2\n"))
			if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("visible before Commit: %v", err)
			}
			if err := d.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := publish(); err != nil {
				t.Fatal(err)
			}
			d.Abort()
			if got, err := readBack(final); err != nil || got != "line 1\nline 2\n" {
				t.Errorf("after Commit: %q, %v", got, err)
			}
		})
		t.Run(k.name+"/abort", func(t *testing.T) {
			dir := t.TempDir()
			d, _, _ := k.open(t, dir)
			d.Write([]byte("line 1\n"))
			d.Abort()
			if k.name == "folder file" {
				// The file is gone from the folder being written; the
				// folder itself goes with the Folder's Abort (cleanup).
				return
			}
			if got := listDir(t, dir); got != "" {
				t.Errorf("Abort left %q", got)
			}
		})
		t.Run(k.name+"/failed write", func(t *testing.T) {
			dir := t.TempDir()
			d, _, _ := k.open(t, dir)
			d.(*Sink).file.Close() // the disk fails under the writer
			_, err := d.Write(bytes.Repeat([]byte("x"), 2*bufSize))
			if err == nil {
				err = d.Commit()
			}
			if err == nil {
				t.Fatal("a write to a closed file succeeded")
			}
			d.Abort()
			if k.name != "folder file" {
				if got := listDir(t, dir); got != "" {
					t.Errorf("Abort after a failed write left %q", got)
				}
			}
		})
	}
}

// A Folder: nothing visible until Commit, which writes the manifest last;
// Abort, after data files were committed, leaves nothing; the manifest's
// name is Commit's, not Create's.
func TestFolderContract(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "export")
	f, err := OpenFolder(path, FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Create(Manifest, false); err == nil {
		t.Error("Create(manifest.json) succeeded")
	}
	d, _ := f.Create("Patient.ndjson", false)
	d.Write([]byte("p\n"))
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if got := listDir(t, dir); got != "" {
		t.Errorf("Abort after a committed file left %q", got)
	}
	if err := f.Commit([]byte("{}\n")); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	f, _ = OpenFolder(path, FolderOptions{})
	d, _ = f.Create("Patient.ndjson", false)
	d.Write([]byte("p\n"))
	d.Commit()
	if err := f.Commit([]byte(`{"output":[]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(path, Manifest)); string(got) != `{"output":[]}`+"\n" {
		t.Errorf("manifest %q", got)
	}
	if got := listDir(t, path); got != "Patient.ndjson manifest.json" {
		t.Errorf("folder holds %q", got)
	}
	f.Abort() // after Commit: nothing
	if got := listDir(t, path); got != "Patient.ndjson manifest.json" {
		t.Errorf("Abort after Commit changed the folder: %q", got)
	}
}

// A folder that appears at the path while the export runs is not replaced
// without force: Commit says so, and leaves nothing of the new one.
func TestFolderCommitRefusesLateFolder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "export")
	f, err := OpenFolder(path, FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(path, 0o755)
	var ee *ExistsError
	if err := f.Commit([]byte("{}\n")); !errors.As(err, &ee) || ee.Path != path || !errors.Is(err, ErrExists) {
		t.Fatalf("Commit over a folder that appeared: %v, want an *ExistsError", err)
	}
	if got := listDir(t, dir); got != "export" {
		t.Errorf("folder holds %q", got)
	}
}

// The --force rules, as facts: without force an existing path is an
// *ExistsError whose message names no flag; with it a file is replaced, a
// folder only when it is an earlier export or empty.
func TestForceRules(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.ndjson")
	os.WriteFile(file, []byte("old\n"), 0o644)
	_, err := Open(Options{Path: file})
	var ee *ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExists) || err.Error() != "output "+file+" already exists" {
		t.Errorf("Open over a file: %v", err)
	}
	d, err := Open(Options{Path: file, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("new\n"))
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); string(got) != "new\n" {
		t.Errorf("forced file holds %q", got)
	}

	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	os.WriteFile(filepath.Join(home, "notes.txt"), nil, 0o644)
	if _, err := OpenFolder(home, FolderOptions{}); !errors.As(err, &ee) || err.Error() != "output "+home+" already exists" {
		t.Errorf("OpenFolder over a folder: %v", err)
	}
	_, err = OpenFolder(home, FolderOptions{Force: true})
	if !errors.Is(err, ErrNotExport) || err.Error() != "output "+home+" is not an earlier export (no manifest.json), and not empty" {
		t.Errorf("forced OpenFolder over a home folder: %v", err)
	}
	for _, name := range []string{"empty", "earlier"} {
		p := filepath.Join(dir, name)
		os.Mkdir(p, 0o755)
		if name == "earlier" {
			os.WriteFile(filepath.Join(p, Manifest), []byte("{}"), 0o644)
			os.WriteFile(filepath.Join(p, "Old.ndjson"), nil, 0o644)
		}
		f, err := OpenFolder(p, FolderOptions{Force: true})
		if err != nil {
			t.Fatalf("forced OpenFolder over %s: %v", name, err)
		}
		if err := f.Commit([]byte("{}\n")); err != nil {
			t.Fatal(err)
		}
		if got := listDir(t, p); got != "manifest.json" {
			t.Errorf("%s replaced by %q", name, got)
		}
	}
}

// A URL target of a scheme that is not written to, or a bucket URL that
// does not parse, is refused by both constructors, its query string (a
// signature) not shown, and nothing is created locally; a file:// URL is
// its path.
func TestURLTargets(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for target, want := range map[string]string{
		"ftp://h/p.ndjson?sig=secret":                 "output ftp://h/p.ndjson?…: not supported: give a local path, - for stdout, or an s3://, gs:// or azblob:// URL",
		"s3://bucket/p.ndjson?X-Amz-Signature=secret": "output s3://bucket/p.ndjson?…: a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)",
		"gs://b:1/x":           "output gs://b:1/x: a bucket name has no port (an emulator's address goes in STORAGE_EMULATOR_HOST)",
		"file://host/x?secret": "output file://host/x?…: a file URL on another host: want file:///PATH",
	} {
		for _, open := range []func() error{
			func() error { _, err := Open(Options{Path: target}); return err },
			func() error { _, err := OpenFolder(target, FolderOptions{}); return err },
		} {
			if err := open(); err == nil || err.Error() != want {
				t.Errorf("%s: %v\nwant %s", target, err, want)
			}
		}
	}
	if got := listDir(t, dir); got != "" {
		t.Errorf("created %q", got)
	}
	d, err := Open(Options{Path: "file://" + filepath.Join(dir, "f.ndjson")})
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("x\n"))
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); got != "f.ndjson" {
		t.Errorf("file:// made %q", got)
	}
	// "-" and "" are stdout.
	var buf bytes.Buffer
	for _, p := range []string{"", "-"} {
		d, err := Open(Options{Path: p, Stdout: &buf})
		if err != nil {
			t.Fatal(err)
		}
		d.Write([]byte("x\n"))
		if err := d.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != "x\nx\n" {
		t.Errorf("stdout got %q", buf.String())
	}
}
