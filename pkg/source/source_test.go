package source

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://b.s3.amazonaws.com/x/y.ndjson.gz?X-Amz-Signature=abc&X-Amz-Date=1": "https://b.s3.amazonaws.com/x/y.ndjson.gz?…",
		"https://user:secret@host:8443/p":                                           "https://host:8443/p",
		"http://host/p":                                                             "http://host/p",
		"http://host/p?":                                                            "http://host/p?…",
		"https://host/a b?sig=1":                                                    "https://host/a%20b?…",
		"https://u:pw@host/%zz?sig=secret":                                          "https://host/%zz?…",
		"./local/file.ndjson":                                                       "./local/file.ndjson",
		"-":                                                                         "-",
	} {
		got := Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "Signature") {
			t.Errorf("Redact(%q) leaks: %q", in, got)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	if d, ok := retryAfter("3"); !ok || d != 3*time.Second {
		t.Errorf("3 seconds: %v %v", d, ok)
	}
	if d, ok := retryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)); !ok || d != 0 {
		t.Errorf("a past date: %v %v", d, ok)
	}
	for _, bad := range []string{"", "soon", "-1"} {
		if _, ok := retryAfter(bad); ok {
			t.Errorf("retryAfter(%q) accepted", bad)
		}
	}
}

func TestContentRange(t *testing.T) {
	if !contentRangeStartsAt("bytes 100-199/200", 100) || contentRangeStartsAt("bytes 0-199/200", 100) || contentRangeStartsAt("", 0) {
		t.Error("contentRangeStartsAt")
	}
}

func TestOpenFileSniffsGzip(t *testing.T) {
	dir := t.TempDir()
	// "x.gz" holds plain text: the name does not decide, the bytes do.
	plain := filepath.Join(dir, "x.gz")
	os.WriteFile(plain, []byte("plain\n"), 0o644) //nolint:errcheck
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
	os.WriteFile(empty, nil, 0o644) //nolint:errcheck
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
