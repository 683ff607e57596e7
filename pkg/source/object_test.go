package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Check says what pkg/bucket's parser says of a bad object URL, behind
// the redacted name, and never the query string.
func TestCheckObjectURL(t *testing.T) {
	for raw, want := range map[string]string{
		"s3://b":                          "no key: want s3://BUCKET/KEY",
		"gs://b/dir/":                     "names a folder (a key ending in /): want gs://BUCKET/KEY",
		"azblob://c/k?sig=SECRET":         "a query parameter in a azblob URL (a pre-signed URL is an https:// URL)",
		"s3://b/k?X-Amz-Signature=SECRET": "a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)",
	} {
		err := Check(raw, Options{})
		if err == nil || !strings.HasSuffix(err.Error(), ": "+want) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Check(%q): %v, want ...: %s", raw, err, want)
		}
	}
}

// fakeS3 serves objects path-style (GET /BUCKET/KEY) with ETags, Range and
// If-Match (http.ServeContent), as S3 does. An object named in drop breaks
// off halfway through its first whole-object response; replaced then (in
// change) it gets new content and a new ETag.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte // "bucket/key"
	etags   map[string]string
	drop    map[string]bool
	change  map[string][]byte
	log     []string // "Range If-Match" of each GET
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	f.mu.Lock()
	f.log = append(f.log, r.Header.Get("Range")+" "+r.Header.Get("If-Match"))
	data, ok := f.objects[name]
	etag := f.etags[name]
	drop := f.drop[name] && r.Header.Get("Range") == ""
	if drop {
		delete(f.drop, name)
		if next, ok := f.change[name]; ok {
			f.objects[name], f.etags[name] = next, fmt.Sprintf(`"v2-%d"`, len(next))
		}
	}
	f.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`)
		return
	}
	w.Header().Set("ETag", etag)
	if drop {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

func startFakeS3(t *testing.T, f *fakeS3) {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET-never-shown")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func readS3(t *testing.T, spec string) ([]byte, *Reader, error) {
	t.Helper()
	r, err := Open(context.Background(), spec, fast(Options{}))
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	return data, r, err
}

// A read that drops resumes at the byte where it stopped, asking for the
// same version (If-Match its ETag).
func TestS3Resume(t *testing.T) {
	content := bytes.Repeat([]byte(`{"id":"x","resourceType":"Patient"}`+"\n"), 4000)
	f := &fakeS3{
		objects: map[string][]byte{"b/Patient.ndjson": content},
		etags:   map[string]string{"b/Patient.ndjson": `"v1"`},
		drop:    map[string]bool{"b/Patient.ndjson": true},
	}
	startFakeS3(t, f)
	got, r, err := readS3(t, "s3://b/Patient.ndjson")
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes of %d: %v", len(got), len(content), err)
	}
	if r.Size() != int64(len(content)) {
		t.Errorf("Size() = %d, want %d", r.Size(), len(content))
	}
	want := []string{" ", fmt.Sprintf(`bytes=%d- "v1"`, len(content)/2)}
	if fmt.Sprint(f.log) != fmt.Sprint(want) {
		t.Errorf("requests %q, want %q", f.log, want)
	}
}

// Replaced in between: the resumed read is refused (If-Match) and the
// source must start over (ErrRestart), as an http source's.
func TestS3ResumeChanged(t *testing.T) {
	content := bytes.Repeat([]byte(`{"id":"x","resourceType":"Patient"}`+"\n"), 4000)
	f := &fakeS3{
		objects: map[string][]byte{"b/k": content},
		etags:   map[string]string{"b/k": `"v1"`},
		drop:    map[string]bool{"b/k": true},
		change:  map[string][]byte{"b/k": []byte("{}\n")},
	}
	startFakeS3(t, f)
	_, _, err := readS3(t, "s3://b/k")
	if !errors.Is(err, ErrRestart) {
		t.Fatalf("err = %v, want ErrRestart", err)
	}
	if len(f.log) != 2 || !strings.HasSuffix(f.log[1], `"v1"`) {
		t.Errorf("requests %q", f.log)
	}
}

// No ETag: nothing proves the rest is of the same version, so no resume.
func TestS3NoETag(t *testing.T) {
	content := bytes.Repeat([]byte("x\n"), 40000)
	f := &fakeS3{
		objects: map[string][]byte{"b/k": content},
		etags:   map[string]string{"b/k": ""},
		drop:    map[string]bool{"b/k": true},
	}
	startFakeS3(t, f)
	_, _, err := readS3(t, "s3://b/k")
	if !errors.Is(err, ErrRestart) || err.Error() != "connection dropped and the server cannot resume (unexpected EOF)" {
		t.Fatalf("err = %v, want ErrRestart", err)
	}
	if len(f.log) != 1 {
		t.Errorf("requests %q", f.log)
	}
}

func TestS3Errors(t *testing.T) {
	startFakeS3(t, &fakeS3{})
	_, _, err := readS3(t, "s3://b/missing.ndjson")
	if err == nil || err.Error() != `s3://b/missing.ndjson: no such key "missing.ndjson" in bucket "b"` {
		t.Errorf("got %v", err)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Errorf("%v is not a *source.Error", err)
	}
	// Nothing answers: one line, no secret.
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
	_, err = Open(context.Background(), "s3://b/k", fast(Options{Tries: 1}))
	if err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "s3://b/k: ") {
		t.Errorf("got %v", err)
	}
	// No credentials anywhere: one line saying so.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, _, err = readS3(t, "s3://b/k")
	if err == nil || err.Error() != "s3://b/k: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE" {
		t.Errorf("got %v", err)
	}
}
