package bulkimport

import (
	"errors"
	"path/filepath"
	"testing"
)

// A manifest's url is resolved by bulkdata.ResolveURL (its cases are
// tested there); import's refusals name where in the manifest the url is,
// are *ManifestError, and one outside the folder says so (Outside), for
// the caller to name its flag.
func TestResolveURLMessages(t *testing.T) {
	dir := t.TempDir()
	for url, want := range map[string]string{
		"":                      "manifest: inputs[0]: no url",
		"ftp://b/x.ndjson":      "manifest: inputs[0].url ftp://b/x.ndjson: only http(s), s3, gs and azblob URLs and local paths",
		"/etc/passwd":           "manifest: inputs[0].url /etc/passwd: /etc/passwd is outside the manifest's folder " + dir,
		"x.ndjson?v=1":          "manifest: inputs[0].url x.ndjson?v=1: a local file's url has no query or fragment (write ? as %3F, # as %23)",
		"ftp://h/x?sig=secret1": "manifest: inputs[0].url ftp://h/x?…: only http(s), s3, gs and azblob URLs and local paths",
	} {
		_, err := resolveURL(url, Where{Dir: dir}, "inputs[0]")
		var me *ManifestError
		if err == nil || err.Error() != want || !errors.As(err, &me) || me.Outside != (url == "/etc/passwd") {
			t.Errorf("%q: %v; want %s", url, err, want)
		}
	}
	if got, err := resolveURL("a/b.ndjson", Where{Dir: dir}, "inputs[0]"); err != nil || got != filepath.Join(dir, "a", "b.ndjson") {
		t.Errorf("%s, %v", got, err)
	}
}
