package bulkdata

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Every form a manifest's url takes for a local file is resolved by one
// rule (a URL reference against the manifest's folder), and none may leave
// that folder without --allow-outside.
func TestResolveURL(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix paths")
	}
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	dir := filepath.Join(root, "export")
	for _, d := range []string{"export/data", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Links in the manifest's folder: one to a folder outside, one to a
	// file outside, one to a folder inside.
	for link, target := range map[string]string{
		"export/out":         "../elsewhere",
		"export/leak.ndjson": filepath.Join(root, "elsewhere", "secret.ndjson"),
		"export/in":          "data",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "elsewhere", "secret.ndjson"), []byte("{}\n"), 0o600)

	outside := "is outside the manifest's folder " + dir
	for _, c := range []struct {
		url, want, err string // want: the path (relative ones under dir); err: part of the error
		allow          bool
	}{
		// http(s): as they are, whatever they hold.
		{url: "https://h/x.ndjson?sig=1", want: "https://h/x.ndjson?sig=1"},
		{url: "HTTP://h/../x", want: "HTTP://h/../x"},
		// Relative references, percent-decoded.
		{url: "Patient.ndjson", want: "Patient.ndjson"},
		{url: "./data/Patient.ndjson.gz", want: "data/Patient.ndjson.gz"},
		{url: "data/a%20b.ndjson", want: "data/a b.ndjson"},
		{url: "a%2Fb.ndjson", want: "a/b.ndjson"},
		{url: "100%25.ndjson", want: "100%.ndjson"},
		{url: "a b.ndjson", want: "a b.ndjson"},
		{url: "data/../Patient.ndjson", want: "Patient.ndjson"},
		{url: "in/x.ndjson", want: "in/x.ndjson"}, // a link to a folder inside
		{url: "./Patient:1.ndjson", want: "Patient:1.ndjson"},
		// Absolute paths and file: URLs in all their standard forms, alike.
		{url: dir + "/data/x.ndjson", want: "data/x.ndjson"},
		{url: "file://" + dir + "/data/x.ndjson", want: "data/x.ndjson"},
		{url: "file:" + dir + "/data/x.ndjson", want: "data/x.ndjson"},
		{url: "file://localhost" + dir + "/data/x.ndjson", want: "data/x.ndjson"},
		{url: "FILE://LOCALHOST" + dir + "/data/x%20y.ndjson", want: "data/x y.ndjson"},
		// Out of the folder: refused, by every route...
		{url: "../elsewhere/secret.ndjson", err: outside},
		{url: "data/../../elsewhere/secret.ndjson", err: outside},
		{url: "%2E%2E/elsewhere/secret.ndjson", err: outside},
		{url: "..%2Felsewhere%2Fsecret.ndjson", err: outside},
		{url: root + "/elsewhere/secret.ndjson", err: outside},
		{url: "file://" + root + "/elsewhere/secret.ndjson", err: outside},
		{url: "file:" + root + "/elsewhere/secret.ndjson", err: outside},
		{url: "file://localhost/etc/passwd", err: outside},
		{url: "/etc/passwd", err: outside},
		{url: "out/secret.ndjson", err: outside},     // through a link to a folder outside
		{url: "out/new.ndjson", err: outside},        // ... even to a file not there (yet)
		{url: "leak.ndjson", err: outside},           // a link to a file outside
		{url: dir + "/../elsewhere/x", err: outside}, // ".." in an absolute path
		// ...unless allowed.
		{url: "../elsewhere/secret.ndjson", allow: true, want: root + "/elsewhere/secret.ndjson"},
		{url: "file:///etc/passwd", allow: true, want: "/etc/passwd"},
		{url: "out/secret.ndjson", allow: true, want: "out/secret.ndjson"},
		// Not a local file, or not one URL names.
		{url: "", err: "no url"},
		{url: "gs://bucket/x.ndjson", want: "gs://bucket/x.ndjson"},
		{url: "azblob://c/x.ndjson", want: "azblob://c/x.ndjson"},
		{url: "ftp:x.ndjson", err: "only http(s), s3, gs and azblob URLs and local paths"},
		{url: "Patient:1.ndjson", err: "only http(s), s3, gs and azblob URLs and local paths"},
		{url: "//host/share/x.ndjson", err: "a network path"},
		{url: "file://host/x.ndjson", err: "a file: URL of another host"},
		{url: "file://u@localhost/x.ndjson", err: "a file: URL of another host"},
		{url: "file:x.ndjson", err: "a file: URL takes an absolute path"},
		{url: "x.ndjson?v=1", err: "a local file's url has no query or fragment"},
		{url: "x.ndjson#1", err: "a local file's url has no query or fragment"},
		{url: "x.ndjson#", err: "a local file's url has no query or fragment"},
		{url: "x%zz.ndjson", err: "not a URL or path"},
		{url: "1:x.ndjson", err: "not a URL or path"},
	} {
		got, err := ResolveURL(c.url, dir, c.allow)
		want := c.want
		if want != "" && !strings.Contains(want, "://") && !filepath.IsAbs(want) {
			want = filepath.Join(dir, want)
		}
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: %q, %v; want an error with %q", c.url, got, err, c.err)
		case c.err == "" && (err != nil || got != want):
			t.Errorf("%q: %q, %v; want %q", c.url, got, err, want)
		case err != nil:
			var ue *URLError
			if !errors.As(err, &ue) || ue.Outside != (c.err == outside) {
				t.Errorf("%q: %#v: not a *URLError, or Outside wrong", c.url, err)
			}
		}
	}
}

// A manifest in a bucket: its relative urls name objects of its prefix,
// as URLs of the same store (endpoint= kept); none may leave the prefix,
// nor name a local file, without allowOutside.
func TestResolveURLBucket(t *testing.T) {
	for _, c := range []struct {
		dir, url, want, err string
		allow               bool
	}{
		{dir: "s3://b/exp/", url: "Patient.ndjson", want: "s3://b/exp/Patient.ndjson"},
		{dir: "s3://b/exp/", url: "./data/a%20b.ndjson", want: "s3://b/exp/data/a%20b.ndjson"},
		{dir: "s3://b/exp/", url: "data/../x%3F.ndjson", want: "s3://b/exp/x%3F.ndjson"},
		{dir: "s3://b/exp/?endpoint=http://127.0.0.1:9000", url: "Patient.ndjson", want: "s3://b/exp/Patient.ndjson?endpoint=http%3A%2F%2F127.0.0.1%3A9000"},
		{dir: "s3://b/exp/?region=eu-west-1", url: "/exp/x.ndjson", want: "s3://b/exp/x.ndjson?region=eu-west-1"},
		{dir: "gs://b/a/exp/", url: "Patient.000.ndjson.gz", want: "gs://b/a/exp/Patient.000.ndjson.gz"},
		{dir: "azblob://c/exp/", url: "deleted.Patient.ndjson", want: "azblob://c/exp/deleted.Patient.ndjson"},
		{dir: "azblob://c/", url: "Patient.ndjson", want: "azblob://c/Patient.ndjson"},
		// Absolute URLs as they are, as from a local manifest.
		{dir: "s3://b/exp/", url: "s3://other/x.ndjson", want: "s3://other/x.ndjson"},
		{dir: "gs://b/exp/", url: "https://h/x?sig=1", want: "https://h/x?sig=1"},
		// Out of the prefix: refused...
		{dir: "s3://b/exp/", url: "../secret/x.ndjson", err: "s3://b/secret/x.ndjson is outside the manifest's folder s3://b/exp/"},
		{dir: "s3://b/exp/", url: "%2E%2E/exp2/x.ndjson", err: "s3://b/exp2/x.ndjson is outside the manifest's folder s3://b/exp/"},
		{dir: "s3://b/exp/", url: "/secret.ndjson", err: "s3://b/secret.ndjson is outside the manifest's folder s3://b/exp/"},
		{dir: "s3://b/exp/", url: "../../../x.ndjson", err: "s3://b/x.ndjson is outside"},
		{dir: "gs://b/exp/", url: "../expiry/x.ndjson", err: "gs://b/expiry/x.ndjson is outside"},
		{dir: "s3://b/exp/", url: "file:///etc/passwd", err: "/etc/passwd is a local file, outside the manifest's folder s3://b/exp/"},
		// ...unless allowed.
		{dir: "s3://b/exp/", url: "../other/x.ndjson", allow: true, want: "s3://b/other/x.ndjson"},
		{dir: "s3://b/exp/", url: "../../../x.ndjson", allow: true, want: "s3://b/x.ndjson"},
		{dir: "s3://b/exp/", url: "file:///data/x.ndjson", allow: true, want: "/data/x.ndjson"},
		// Not an object.
		{dir: "s3://b/exp/", url: ".", err: "names the manifest's folder, not an object"},
		{dir: "s3://b/exp/", url: "..", allow: true, err: "names the manifest's folder, not an object"},
		{dir: "s3://b/exp/", url: "x.ndjson?v=1", err: "url x.ndjson?v=1: a relative url has no query or fragment"},
		{dir: "s3://b/exp/", url: "//host/x", err: "a network path"},
		{dir: "s3://b/exp/", url: "ftp://h/x", err: "only http(s), s3, gs and azblob URLs and local paths"},
	} {
		got, err := ResolveURL(c.url, c.dir, c.allow)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s in %s: %q, %v; want an error with %q", c.url, c.dir, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s in %s: %q, %v; want %q", c.url, c.dir, got, err, c.want)
		case err != nil:
			var ue *URLError
			if !errors.As(err, &ue) || ue.Outside != strings.Contains(c.err, "outside") || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("%s in %s: %#v: not a *URLError, Outside wrong, or a secret shown", c.url, c.dir, err)
			}
		}
	}
}

// RealPath resolves the links of what exists and keeps what does not;
// relative paths are made absolute.
func TestRealPath(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix paths")
	}
	root, _ := filepath.EvalSymlinks(t.TempDir())
	os.Mkdir(filepath.Join(root, "real"), 0o700)
	os.WriteFile(filepath.Join(root, "real", "manifest.json"), []byte("{}"), 0o600)
	os.Symlink("real", filepath.Join(root, "last"))
	os.Symlink("nowhere", filepath.Join(root, "dangling"))
	t.Chdir(root)
	for path, want := range map[string]string{
		root + "/last/manifest.json": root + "/real/manifest.json",
		"last/manifest.json":         root + "/real/manifest.json",
		root + "/last/new/x.ndjson":  root + "/real/new/x.ndjson",
		root + "/real/../last/./a":   root + "/real/a",
		root + "/dangling":           root + "/dangling",
		root + "/dangling/x":         root + "/dangling/x",
	} {
		if got := RealPath(path); got != want {
			t.Errorf("%s: %s; want %s", path, got, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	at := time.Date(2026, 11, 29, 2, 0, 0, 123456000, time.UTC)
	if got, err := ParseTime(FormatTime(at)); err != nil || !got.Equal(at) {
		t.Errorf("%v, %v", got, err)
	}
	if got, err := ParseTime("2026-11-29T03:00:00.123456+01:00"); err != nil || !got.Equal(at) {
		t.Errorf("%v, %v", got, err)
	}
	for _, bad := range []string{"", "2026-11-29", "monday", "2026-11-29T02:00:00"} {
		if _, err := ParseTime(bad); err == nil || !strings.HasSuffix(err.Error(), ": not an RFC 3339 instant") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A bucket's manifest is recorded (Ext.Follows) as its URL without the
// query; a file URL as its path.
func TestRealPathURL(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b/last/manifest.json?endpoint=http://127.0.0.1:9000": "s3://b/last/manifest.json",
		"GS://b/x/manifest.json":                                   "gs://b/x/manifest.json",
		"file:///nowhere/x/manifest.json":                          "/nowhere/x/manifest.json",
	} {
		if got := RealPath(in); got != want {
			t.Errorf("RealPath(%s) = %s, want %s", in, got, want)
		}
	}
}
