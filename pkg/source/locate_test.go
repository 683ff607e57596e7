package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// locate is the one place a spec's kind is told: each scheme goes to its
// opener, or is refused with one reason, and Check and Open agree.
func TestLocate(t *testing.T) {
	type want struct {
		kind string // stdin, url, file, refused
		err  string // for refused
	}
	for spec, w := range map[string]want{
		"-":                                 {kind: "stdin"},
		"Patient.ndjson":                    {kind: "file"},
		"/data/Patient.ndjson.gz":           {kind: "file"},
		"a:b.ndjson":                        {kind: "file"}, // a scheme-like name without "//" is a path
		"//data/x.ndjson":                   {kind: "file"},
		"http://host/x":                     {kind: "url"},
		"  HTTPS://host/x?sig=SIG\t":        {kind: "url"},
		"s3://bucket/key?endpoint=http://h": {kind: "url"},
		"S3://bucket/key":                   {kind: "url"},
		"gs://bucket/o":                     {kind: "url"},
		"azblob://c/o":                      {kind: "url"},
		"file:///x":                         {kind: "file"},
		"file://host/x":                     {kind: "refused", err: "file://host/x: a file URL on another host: want file:///PATH"},
		"https:host/x":                      {kind: "refused", err: "https:host/x: not a URL: want https://HOST/PATH"},
		"//u:PW@host/x":                     {kind: "refused", err: "//host/x: not a URL: no scheme (want https://HOST/PATH)"},
		"//host/x?sig=S":                    {kind: "refused", err: "//host/x?…: not a URL: no scheme (want https://HOST/PATH)"},
	} {
		loc := locate(spec)
		var kind string
		switch {
		case loc.err != nil:
			kind = "refused"
		case loc.stdin:
			kind = "stdin"
		case loc.opener != nil:
			kind = "url"
		default:
			kind = "file"
		}
		if kind != w.kind {
			t.Errorf("locate(%q) is %s, want %s", spec, kind, w.kind)
			continue
		}
		if kind == "url" && loc.url != strings.TrimSpace(spec) {
			t.Errorf("locate(%q).url = %q", spec, loc.url)
		}
		if kind != "refused" {
			continue
		}
		var se *Error
		if loc.err.Error() != w.err || !errors.As(loc.err, &se) {
			t.Errorf("locate(%q): %v, want %s", spec, loc.err, w.err)
		}
		if _, err := Open(context.Background(), spec, Options{}); err == nil || err.Error() != w.err {
			t.Errorf("Open(%q): %v, want %s", spec, err, w.err)
		}
		if err := Check(spec, Options{}); err == nil || err.Error() != w.err {
			t.Errorf("Check(%q): %v, want %s", spec, err, w.err)
		}
	}
}

// schemeOpener knows http(s) and the object stores; IsURL follows it.
func TestSchemeOpener(t *testing.T) {
	for scheme, want := range map[string]bool{"http": true, "https": true, "s3": true, "gs": true, "azblob": true, "file": false, "": false} {
		if _, ok := schemeOpener(scheme); ok != want {
			t.Errorf("schemeOpener(%q) = %v, want %v", scheme, ok, want)
		}
	}
	if !IsURL(" https://h/x ") || !IsURL("s3://b/k") || !IsURL("gs://b/k") || IsURL("file:///x") || IsURL("x.ndjson") || IsURL("-") {
		t.Error("IsURL does not follow schemeOpener")
	}
	for spec, want := range map[string]string{"s3://b/k": "s3", "HTTPS://h/x": "https", "a:b": "", "x.ndjson": "", "-": "", "//h/x": ""} {
		if got := URLScheme(spec); got != want {
			t.Errorf("URLScheme(%q) = %q, want %q", spec, got, want)
		}
	}
}

// Check of a file: it must be there, and not a folder; stdin needs Stdin;
// an http(s) URL must have a host (no request is made).
func TestCheckKinds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.ndjson")
	os.WriteFile(file, []byte("{}\n"), 0o644)
	if err := Check(file, Options{}); err != nil {
		t.Errorf("a file: %v", err)
	}
	if err := Check(dir, Options{}); err == nil || !strings.HasSuffix(err.Error(), ": is a folder") {
		t.Errorf("a folder: %v", err)
	}
	if err := Check(filepath.Join(dir, "none"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if err := Check("-", Options{}); err == nil || err.Error() != "stdin: not available" {
		t.Errorf("stdin without Stdin: %v", err)
	}
	if err := Check("-", Options{Stdin: strings.NewReader("")}); err != nil {
		t.Errorf("stdin: %v", err)
	}
	if err := Check("https://host.invalid/x", Options{}); err != nil {
		t.Errorf("an https URL (no request): %v", err)
	}
	if err := Check("https:///x", Options{}); err == nil || err.Error() != "https:///x: not a URL: want https://HOST/PATH" {
		t.Errorf("an https URL without a host: %v", err)
	}
}
