package source

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	if d, ok := RetryAfter("3", time.Now()); !ok || d != 3*time.Second {
		t.Errorf("3 seconds: %v %v", d, ok)
	}
	if d, ok := RetryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), time.Now()); !ok || d != 0 {
		t.Errorf("a past date: %v %v", d, ok)
	}
	for _, bad := range []string{"", "soon", "-1"} {
		if _, ok := RetryAfter(bad, time.Now()); ok {
			t.Errorf("RetryAfter(%q) accepted", bad)
		}
	}
}

func TestSameObject(t *testing.T) {
	h := &httpBody{stream: stream{off: 100, size: 200}, validator: `"v1"`, etag: true}
	for _, c := range []struct {
		contentRange, etag string
		want               bool
	}{
		{"bytes 100-199/200", `"v1"`, true},
		{"bytes 100-199/*", "", true},
		{"bytes 0-199/200", `"v1"`, false},
		{"bytes 100-299/300", `"v1"`, false},
		{"bytes 100-199/200", `"v2"`, false},
		{"", `"v1"`, false},
	} {
		resp := &http.Response{Header: http.Header{}}
		resp.Header.Set("Content-Range", c.contentRange)
		if c.etag != "" {
			resp.Header.Set("ETag", c.etag)
		}
		if got := h.sameObject(resp); got != c.want {
			t.Errorf("Content-Range %q, ETag %q: %v, want %v", c.contentRange, c.etag, got, c.want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", time.Hour: "1h", 90 * time.Minute: "1h30m", time.Second: "1s", 250 * time.Millisecond: "250ms",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestOpenFileSniffsGzip(t *testing.T) {
	dir := t.TempDir()
	// "x.gz" holds plain text: the name does not decide, the bytes do.
	plain := filepath.Join(dir, "x.gz")
	os.WriteFile(plain, []byte("plain\n"), 0o644)
	r, err := Open(context.Background(), plain, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "plain\n" || r.Size() != 6 || r.BytesRead() != 6 {
		t.Errorf("read %q, %v; size %d, read %d", got, err, r.Size(), r.BytesRead())
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	r, err = Open(context.Background(), empty, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 0 {
		t.Errorf("empty file: %q, %v", got, err)
	}
	if _, err := Open(context.Background(), "-", Options{Stdin: strings.NewReader("x")}); err != nil {
		t.Error(err)
	}
}

// ReadAll reads a source whole up to its limit, and refuses more naming
// the source; gzip is read through as by Open.
func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "q.sql")
	os.WriteFile(small, []byte("SELECT 1"), 0o600)
	if data, err := ReadAll(context.Background(), small, Options{}, 8); err != nil || string(data) != "SELECT 1" {
		t.Errorf("%q, %v", data, err)
	}
	if data, err := ReadAll(context.Background(), "file://"+small, Options{}, 8); err != nil || string(data) != "SELECT 1" {
		t.Errorf("file URL: %q, %v", data, err)
	}
	_, err := ReadAll(context.Background(), small, Options{}, 7)
	var tl *TooLargeError
	if !errors.As(err, &tl) || err.Error() != small+": larger than 7 bytes" {
		t.Errorf("too large: %v", err)
	}
	if _, err := ReadAll(context.Background(), "-", Options{Stdin: strings.NewReader(strings.Repeat("x", 2<<20))}, 1<<20); err == nil || err.Error() != "stdin: larger than 1 MiB" {
		t.Errorf("stdin: %v", err)
	}
	if _, err := ReadAll(context.Background(), filepath.Join(dir, "nope.sql"), Options{}, 8); err == nil || err.Error() != filepath.Join(dir, "nope.sql")+": no such file or directory" {
		t.Errorf("missing: %v", err)
	}
}
