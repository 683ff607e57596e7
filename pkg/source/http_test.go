package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fast retries, so that tests of giving up do not wait.
func fast(o Options) Options {
	o.Backoff = time.Millisecond
	if o.Tries == 0 {
		o.Tries = 3
	}
	return o
}

// reqLog records what a test server was asked.
type reqLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *reqLog) add(r *http.Request) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
	return len(l.reqs)
}

func (l *reqLog) all() []*http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*http.Request(nil), l.reqs...)
}

// breakOff sends the headers and the first half of data, then cuts the
// connection.
func breakOff(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}

// stall answers like http.ServeContent (Range included) but sends only half
// of the bytes asked for, then waits until the client goes away.
func stall(w http.ResponseWriter, r *http.Request, data []byte) {
	from := 0
	if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		from, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)-from))
	if from > 0 {
		w.WriteHeader(http.StatusPartialContent)
	}
	w.Write(data[from : from+(len(data)-from)/2])
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// serveRange serves data, or the rest of it from a "Range: bytes=N-",
// whatever If-Range says.
func serveRange(w http.ResponseWriter, r *http.Request, data []byte) {
	from := 0
	if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		from, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)-from))
		w.WriteHeader(http.StatusPartialContent)
	}
	w.Write(data[from:])
}

// guard bounds a test that would hang without the idle timeout: it fails
// on the deadline instead. Generous: nothing is measured by it.
func guard(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readAll(t *testing.T, ctx context.Context, spec string, opts Options) (string, error) {
	t.Helper()
	r, err := Open(ctx, spec, opts)
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return string(b), err
}

var (
	v1 = strings.Repeat(`{"id":"a","v":"old-old-old-old"}`+"\n", 3)
	v2 = strings.Repeat(`{"id":"a","v":"new-new-new-new"}`+"\n", 3)
)

// A body that breaks off is resumed only with a validator for If-Range:
// without one, a file replaced in between would come back as a splice of
// two versions.
func TestResumeNeedsValidator(t *testing.T) {
	for _, c := range []struct {
		name    string
		headers map[string]string
		resume  string // the If-Range expected, "" for no resume
	}{
		{"none", nil, ""},
		{"weak ETag", map[string]string{"ETag": `W/"1"`}, ""},
		{"strong ETag", map[string]string{"ETag": `"1"`}, `"1"`},
		{"Last-Modified", map[string]string{"Last-Modified": "Sun, 29 Nov 2026 10:00:00 GMT"}, "Sun, 29 Nov 2026 10:00:00 GMT"},
		{"weak ETag and Last-Modified", map[string]string{"ETag": `W/"1"`, "Last-Modified": "Sun, 29 Nov 2026 10:00:00 GMT"}, "Sun, 29 Nov 2026 10:00:00 GMT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l reqLog
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Accept-Ranges", "bytes")
				for k, v := range c.headers {
					w.Header().Set(k, v)
				}
				if l.add(r) == 1 {
					breakOff(w, []byte(v1))
					return
				}
				// The file was replaced, and this server honours any Range,
				// If-Range or not: what a splice is made of.
				serveRange(w, r, []byte(v2))
			}))
			defer srv.Close()
			got, err := readAll(t, context.Background(), srv.URL+"/x.ndjson", fast(Options{}))
			reqs := l.all()
			if c.resume == "" {
				if !errors.Is(err, ErrRestart) {
					t.Fatalf("want ErrRestart, got %v and %q", err, got)
				}
				if len(reqs) != 1 {
					t.Errorf("%d requests, want 1 (no Range request)", len(reqs))
				}
				return
			}
			// A validator: resumed, If-Range sent (the server here ignores it).
			if err != nil || len(reqs) != 2 {
				t.Fatalf("%d requests, %v", len(reqs), err)
			}
			if rg, ir := reqs[1].Header.Get("Range"), reqs[1].Header.Get("If-Range"); rg != "bytes="+strconv.Itoa(len(v1)/2)+"-" || ir != c.resume {
				t.Errorf("resumed with Range %q, If-Range %q", rg, ir)
			}
		})
	}
}

// A file replaced between the break and the resume fails If-Range: the
// server sends all of the new version (200), and the source starts over.
func TestResumeChangedFile(t *testing.T) {
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.add(r) == 1 {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Accept-Ranges", "bytes")
			breakOff(w, []byte(v1))
			return
		}
		w.Header().Set("ETag", `"v2"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(v2))
	}))
	defer srv.Close()
	got, err := readAll(t, context.Background(), srv.URL+"/x", fast(Options{}))
	if !errors.Is(err, ErrRestart) {
		t.Fatalf("want ErrRestart, got %v and %q", err, got)
	}
	if reqs := l.all(); len(reqs) != 2 || reqs[1].Header.Get("If-Range") != `"v1"` {
		t.Errorf("requests: %d", len(reqs))
	}
}

// The same file, resumed: all of it, once.
func TestResumeSameFile(t *testing.T) {
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		if l.add(r) == 1 {
			breakOff(w, []byte(v1))
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(v1))
	}))
	defer srv.Close()
	got, err := readAll(t, context.Background(), srv.URL+"/x", fast(Options{}))
	if err != nil || got != v1 {
		t.Fatalf("%v, %q", err, got)
	}
	if reqs := l.all(); len(reqs) != 2 {
		t.Errorf("requests: %d", len(reqs))
	}
}

// Spelling: upper-case schemes work, spaces around a URL are not part of it.
func TestOpenURLSpelling(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "PASSWORD" {
			http.Error(w, "who?", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("X-Amz-Signature") != "SIG" {
			http.Error(w, "signature", http.StatusForbidden)
			return
		}
		io.WriteString(w, v1)
	}))
	defer srv.Close()
	hostport := strings.TrimPrefix(srv.URL, "https://")
	for _, spec := range []string{
		"HTTPS://u:PASSWORD@" + hostport + "/x?X-Amz-Signature=SIG",
		"  HttpS://u:PASSWORD@" + hostport + "/x?X-Amz-Signature=SIG\t",
	} {
		r, err := Open(context.Background(), spec, Options{Client: srv.Client()})
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != v1 {
			t.Errorf("%q: %v, %q", spec, err, b)
		}
		if r.Name() != "https://"+hostport+"/x?…" {
			t.Errorf("name %q", r.Name())
		}
	}
	// A failure names the source redacted.
	_, err := Open(context.Background(), " HTTPS://u:PASSWORD@"+hostport+"/x?X-Amz-Signature=wrong-SIG ", Options{Client: srv.Client()})
	if err == nil || err.Error() != "https://"+hostport+"/x?…: HTTP 403 Forbidden" {
		t.Errorf("got %v", err)
	}
}

// Other schemes are refused, and no message shows a secret.
func TestOpenOtherSchemes(t *testing.T) {
	for spec, want := range map[string]string{
		"s3://bucket/key?X-Amz-Signature=SIG":                     "s3://bucket/key?…: a query parameter other than endpoint= and region= (a pre-signed URL is an https:// URL)",
		" gs://u:PASSWORD@bucket/o?X-Goog-Signature=SIG#frag ":    "gs://bucket/o?…: no user or password in a bucket URL: credentials come from the environment (GOOGLE_APPLICATION_CREDENTIALS)",
		"FTP://u:PASSWORD@host/f":                                 "ftp://host/f: not supported yet: use a pre-signed https URL",
		"https:u:PASSWORD@host/x?sig=SIG":                         "https:host/x?…: not a URL: want https://HOST/PATH",
		"file://u:PASSWORD@/x?sig=SIG":                            "file:///x?…: a file URL takes no user, query string or #: want file:///PATH",
		"Abc+1.x-y://u:PASSWORD@h/%zz?sig=SIG":                    "abc+1.x-y://h/%zz?…: not supported yet: use a pre-signed https URL",
		"./no/such/file.ndjson":                                   "./no/such/file.ndjson: no such file or directory",
		"  https://u:PASSWORD@127.0.0.1:0/x?X-Amz-Signature=SIG ": "",
	} {
		_, err := Open(context.Background(), spec, fast(Options{Tries: 1}))
		if err == nil {
			t.Errorf("Open(%q) works", spec)
			continue
		}
		if want != "" && err.Error() != want {
			t.Errorf("Open(%q):\n %v\nwant %s", spec, err, want)
		}
		if s := leaks(err.Error()); s != "" {
			t.Errorf("Open(%q) leaks %s: %v", spec, s, err)
		}
	}
}

// A redirect to another host carries no Referer (Go's client would send
// the URL it came from, signature and all).
func TestRedirectSendsNoReferer(t *testing.T) {
	var to reqLog
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to.add(r)
		io.WriteString(w, v1)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/object", http.StatusFound)
	}))
	defer srv.Close()
	for _, client := range []*http.Client{nil, {}, srv.Client()} {
		got, err := readAll(t, context.Background(), srv.URL+"/x?X-Amz-Signature=SIG", Options{Client: client})
		if err != nil || got != v1 {
			t.Fatalf("%v, %q", err, got)
		}
	}
	for _, r := range to.all() {
		if ref := r.Header.Get("Referer"); ref != "" {
			t.Errorf("Referer: %s", ref)
		}
	}
	if len(to.all()) != 3 {
		t.Errorf("%d requests redirected", len(to.all()))
	}
}

// The redirect limit still holds, and its message shows no signature.
func TestRedirectLimit(t *testing.T) {
	var l reqLog
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r)
		http.Redirect(w, r, srv.URL+"/again?X-Amz-Signature=SIG", http.StatusFound)
	}))
	defer srv.Close()
	_, err := readAll(t, context.Background(), srv.URL+"/x?X-Amz-Signature=SIG", fast(Options{Tries: 1}))
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") || leaks(err.Error()) != "" {
		t.Errorf("got %v", err)
	}
	if n := len(l.all()); n != 10 {
		t.Errorf("%d requests", n)
	}
}

// A server that sends no headers: given up after Tries, plainly.
func TestIdleHeaders(t *testing.T) {
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r)
		<-r.Context().Done()
	}))
	defer srv.Close()
	_, err := readAll(t, guard(t), srv.URL+"/x?sig=SIG", fast(Options{IdleTimeout: 100 * time.Millisecond}))
	if err == nil || err.Error() != srv.URL+"/x?…: no data for 100ms (gave up after 3 tries)" {
		t.Errorf("got %v", err)
	}
	if n := len(l.all()); n != 3 {
		t.Errorf("%d requests", n)
	}
}

// A body that stalls is abandoned after IdleTimeout and resumed like a
// dropped connection.
func TestIdleBodyResumed(t *testing.T) {
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		if l.add(r) == 1 {
			stall(w, r, []byte(v1))
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(v1))
	}))
	defer srv.Close()
	// Tries to spare: on a busy machine a request that serves may yet take
	// longer than IdleTimeout.
	got, err := readAll(t, guard(t), srv.URL+"/x", fast(Options{IdleTimeout: 100 * time.Millisecond, Tries: 10}))
	if err != nil || got != v1 {
		t.Fatalf("%v, %q", err, got)
	}
	// More than 2 requests only if this machine is slower than IdleTimeout.
	if reqs := l.all(); len(reqs) < 2 || reqs[1].Header.Get("Range") != "bytes="+strconv.Itoa(len(v1)/2)+"-" {
		t.Errorf("%d requests", len(reqs))
	}
}

// Without a way to resume, a stalled body is ErrRestart, saying why.
func TestIdleBodyNotResumable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stall(w, r, []byte(v1))
	}))
	defer srv.Close()
	_, err := readAll(t, guard(t), srv.URL+"/x", fast(Options{IdleTimeout: 100 * time.Millisecond}))
	if !errors.Is(err, ErrRestart) || err.Error() != ErrRestart.Error()+" (no data for 100ms)" {
		t.Errorf("got %v", err)
	}
}

// A body that stalls every time: given up after Tries, plainly, and a gzip
// stream is not called corrupt for it.
func TestIdleBodyGivesUp(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := range 2000 {
		fmt.Fprintf(zw, `{"id":"a%d"}`+"\n", i)
	}
	zw.Close()
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r)
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		stall(w, r, gz.Bytes())
	}))
	defer srv.Close()
	_, err := readAll(t, guard(t), srv.URL+"/x.ndjson.gz?sig=SIG", fast(Options{IdleTimeout: 100 * time.Millisecond}))
	if err == nil || err.Error() != "no data for 100ms (gave up after 3 tries)" || errors.Is(err, ErrRestart) {
		t.Errorf("got %v", err)
	}
	if n := len(l.all()); n < 3 { // more only if a header wait on a slow machine took IdleTimeout too
		t.Errorf("%d requests", n)
	}
}

// The caller's cancellation is the caller's: ctx.Err(), not a dropped
// connection. A negative IdleTimeout waits for ever.
func TestIdleCallerCancels(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(v1)))
		io.WriteString(w, v1[:10])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := Open(ctx, srv.URL+"/x", fast(Options{IdleTimeout: -1}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel()
	got, err := io.ReadAll(r)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRestart) || !strings.HasPrefix(v1[:10], string(got)) {
		t.Errorf("got %v, %q", err, got)
	}
}

// Time nobody spends reading is not the server's silence: a reader slower
// than IdleTimeout still gets everything. The body comes from
// memory (memTransport), so the reads after that wait for nothing: with a
// test server, a read that waited 200 ms for its goroutine on a busy
// machine failed the test with "no data for 200ms".
func TestIdleOnlyWhileReading(t *testing.T) {
	big := bytes.Repeat([]byte(`{"id":"slow-reader"}`+"\n"), 200_000) // 4 MB: more than Open's buffer
	const idle = time.Second
	client := &http.Client{Transport: memTransport(big)}
	r, err := Open(guard(t), "http://mem/x", fast(Options{Client: client, IdleTimeout: idle}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Not synchronisation: the reader being away for longer than IdleTimeout
	// is the case under test (twice as long: a timer left running would
	// have fired, however late).
	time.Sleep(2 * idle)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("%v, %d bytes", err, len(got))
	}
}

// memTransport answers every request with body, from memory; a Read of the
// body fails once the request's context has ended, as net/http's does.
type memTransport []byte

func (body memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{}, Request: req,
		ContentLength: int64(len(body)), Body: &ctxBody{ctx: req.Context(), r: bytes.NewReader(body)},
	}, nil
}

type ctxBody struct {
	ctx context.Context
	r   *bytes.Reader
}

func (b *ctxBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

func (b *ctxBody) Close() error { return nil }

// Nothing delivered yet: a stall before the first byte is retried from the
// start even where the server cannot resume.
func TestIdleBeforeFirstByte(t *testing.T) {
	var l reqLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(v1)))
		if l.add(r) == 1 {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, v1)
	}))
	defer srv.Close()
	got, err := readAll(t, guard(t), srv.URL+"/x", fast(Options{IdleTimeout: 100 * time.Millisecond, Tries: 10})) // as in TestIdleBodyResumed
	if err != nil || got != v1 || len(l.all()) < 2 {
		t.Errorf("%v, %q, %d requests", err, got, len(l.all()))
	}
}

// Close while a Read waits for a silent server in another goroutine (gzip's
// read-ahead, or a caller's): Close returns, and so does the Read, with no
// idle timeout to help.
func TestCloseWhileReading(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := range 20000 {
		fmt.Fprintf(zw, `{"id":"a%d"}`+"\n", i)
	}
	zw.Close()
	for name, data := range map[string][]byte{"gzip": gz.Bytes(), "plain": []byte(v1)} {
		t.Run(name, func(t *testing.T) {
			stalled := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data[:len(data)/2])
				w.(http.Flusher).Flush()
				close(stalled)
				<-r.Context().Done()
			}))
			defer srv.Close()
			ctx := guard(t)
			r, err := Open(ctx, srv.URL+"/x", Options{IdleTimeout: -1})
			if err != nil {
				t.Fatal(err)
			}
			<-stalled
			read := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(r)
				read <- err
			}()
			closed := make(chan struct{})
			go func() {
				r.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-ctx.Done():
				t.Fatal("Close waits for the server")
			}
			select {
			case <-read:
			case <-ctx.Done():
				t.Fatal("Read waits for the server after Close")
			}
		})
	}
}
