package bulkdata

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFileBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	if data, err := ReadFile(ctx, sparse("max", MaxFileSize)); err != nil || len(data) != MaxFileSize {
		t.Fatalf("a file of MaxFileSize: %d bytes, %v", len(data), err)
	}
	var tl *TooLargeError
	if _, err := ReadFile(ctx, sparse("over", MaxFileSize+1)); !errors.As(err, &tl) || err.Error() != "larger than 64 MiB: not a manifest" {
		t.Fatalf("a file of MaxFileSize+1: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := ReadFile(ctx, "/dev/zero"); !errors.As(err, &tl) {
			t.Fatalf("/dev/zero: %v", err)
		}
	}
	small := filepath.Join(dir, "m.json")
	os.WriteFile(small, []byte(`{"a":1}`), 0o600)
	if data, err := ReadFile(ctx, small); err != nil || string(data) != `{"a":1}` {
		t.Fatalf("a small file: %q, %v", data, err)
	}
	if _, err := ReadFile(ctx, filepath.Join(dir, "nosuch")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no file: %v", err)
	}
	if _, err := ReadFile(ctx, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("a folder: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReadFile(cancelled, small); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled context: %v", err)
	}

	if data, err := ReadAll(ctx, strings.NewReader("abc")); err != nil || string(data) != "abc" {
		t.Fatalf("ReadAll: %q, %v", data, err)
	}
	if _, err := ReadAll(ctx, io.LimitReader(zeros{}, MaxFileSize+1)); !errors.As(err, &tl) {
		t.Fatalf("ReadAll of MaxFileSize+1: %v", err)
	}
	if _, err := ReadAll(ctx, bytes.NewReader(make([]byte, MaxFileSize))); err != nil {
		t.Fatalf("ReadAll of MaxFileSize: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ReadSpec reads a path or a file:///PATH alike; a bucket URL that names
// no object is refused before any request.
func TestReadSpec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifest.json")
	os.WriteFile(path, []byte(`{"output":[]}`), 0o600)
	for _, spec := range []string{path, "file://" + path, "file://localhost" + path} {
		if data, err := ReadSpec(context.Background(), spec); err != nil || string(data) != `{"output":[]}` {
			t.Errorf("%s: %q, %v", spec, data, err)
		}
	}
	for spec, want := range map[string]string{
		"s3://b/last/":                 "names a folder (a key ending in /): want s3://BUCKET/KEY",
		"gs://b":                       "no key: want gs://BUCKET/KEY",
		"s3://b/m.json?X-Amz-Sig=s3cr": "a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)",
		"file://host/m.json":           "a file URL on another host: want file:///PATH",
	} {
		if _, err := ReadSpec(context.Background(), spec); err == nil || err.Error() != want {
			t.Errorf("%s: %v; want %s", spec, err, want)
		}
	}
}
