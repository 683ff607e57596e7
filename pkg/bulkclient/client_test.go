package bulkclient

import (
	"context"
	"encoding/json"
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

// fastClient is a client that does not wait: its sleeps are recorded.
func fastClient(auth Auth, trusted ...string) (*Client, *[]time.Duration) {
	c := New(auth, nil, trusted...)
	var waits []time.Duration
	var mu sync.Mutex
	c.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return c, &waits
}

// countingTokens is a Tokens that hands out tok-1, tok-2, ...
type countingTokens struct {
	mu  sync.Mutex
	n   int
	cur string
}

func (t *countingTokens) Token(context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == "" {
		t.n++
		t.cur = fmt.Sprintf("tok-%d", t.n)
	}
	return t.cur, nil
}

func (t *countingTokens) Invalidate(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == tok {
		t.cur = ""
	}
}

// The token goes to the trusted origin only: not to another host, not
// after a redirect through another host (even back to the trusted one),
// and a 401 gets one new token and one more try.
func TestTransportKeepsTokenHome(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got["other"+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		if r.URL.Path == "/back" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, "other")
	}))
	defer other.Close()
	revoked := true
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got["home"+r.URL.Path] = r.Header.Get("Authorization")
		first := revoked && r.Header.Get("Authorization") == "Bearer tok-1"
		mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, other.URL+"/file?sig=s", http.StatusTemporaryRedirect)
		case "/roundtrip":
			http.Redirect(w, r, other.URL+"/back?to="+"http://"+r.Host+"/final", http.StatusFound)
		case "/revoked":
			if first {
				http.Error(w, "expired", http.StatusUnauthorized)
				return
			}
			io.WriteString(w, "ok")
		default:
			io.WriteString(w, "home")
		}
	}))
	defer home.Close()
	toks := &countingTokens{}
	c, _ := fastClient(Bearer(toks), home.URL)
	for _, path := range []string{"/plain", "/redirect", "/roundtrip", "/revoked"} {
		resp, err := c.HTTP.Get(home.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	resp, err := c.HTTP.Get(other.URL + "/direct")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"home/plain": "Bearer tok-1", "home/redirect": "Bearer tok-1", "other/file": "",
		"home/roundtrip": "Bearer tok-1", "other/back": "", "home/final": "",
		"home/revoked": "Bearer tok-2", "other/direct": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s got Authorization %q, want %q", k, got[k], v)
		}
	}
}

// status is a scripted status endpoint: each poll takes the next answer.
type answer struct {
	code    int
	headers map[string]string
	body    string
}

func statusServer(t *testing.T, answers ...answer) (*httptest.Server, *int) {
	polls := 0
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		i := polls
		polls++
		mu.Unlock()
		if r.URL.Path == "/page2" {
			io.WriteString(w, `{"transactionTime":"t","output":[{"type":"Observation","url":"http://x/o.ndjson"}],"error":[]}`)
			return
		}
		if i >= len(answers) {
			t.Errorf("poll %d: no answer left", i+1)
			w.WriteHeader(500)
			return
		}
		a := answers[i]
		for k, v := range a.headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

const outcomeTransient = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"busy"}]}`

func TestPoll(t *testing.T) {
	date := time.Date(2026, 12, 4, 12, 0, 30, 0, time.UTC)
	manifest := `{"transactionTime":"2026-12-04T12:00:00Z","requiresAccessToken":true,"output":[{"type":"Patient","url":"http://x/p.ndjson","count":3}],"error":[],"link":[{"relation":"next","url":"/page2"}]}`
	srv, polls := statusServer(t,
		answer{202, map[string]string{"X-Progress": "10%\t\tdone", "Retry-After": "3"}, ""},
		answer{202, map[string]string{"Retry-After": date.Format(http.TimeFormat)}, ""},
		answer{202, nil, ""},
		answer{500, nil, ""},
		answer{503, map[string]string{"Content-Type": "application/fhir+json"}, outcomeTransient},
		answer{429, map[string]string{"Retry-After": "7"}, ""},
		answer{200, map[string]string{"X-Export-Status": "202"}, ""},
		answer{200, map[string]string{"Expires": date.Format(http.TimeFormat)}, manifest},
	)
	c, waits := fastClient(nil)
	c.Now = func() time.Time { return date.Add(-20 * time.Second) }
	var progress []string
	done, err := c.Poll(context.Background(), srv.URL+"/status?_jobId=1", c.Now(), func(p Progress) { progress = append(progress, p.Text) })
	if err != nil {
		t.Fatal(err)
	}
	if *polls != 9 {
		t.Errorf("%d requests, want 8 polls and a page", *polls)
	}
	wantWaits := []time.Duration{3 * time.Second, 20 * time.Second, time.Second, 2 * time.Second, 4 * time.Second, 7 * time.Second, 8 * time.Second}
	if fmt.Sprint(*waits) != fmt.Sprint(wantWaits) {
		t.Errorf("waits %v, want %v", *waits, wantWaits)
	}
	if progress[0] != "10% done" {
		t.Errorf("progress %q", progress[0])
	}
	if len(done.Manifest.Output) != 2 || done.Manifest.Output[1].Type != "Observation" || !done.Expires.Equal(date) {
		t.Errorf("manifest %+v, expires %v", done.Manifest, done.Expires)
	}
	var back map[string]any
	if err := json.Unmarshal(done.Raw, &back); err != nil {
		t.Fatal(err)
	}
}

func TestPollFailures(t *testing.T) {
	failed := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"export job failed: disk full"}]}`
	for _, tc := range []struct {
		name    string
		answers []answer
		want    string
		expired bool
	}{
		{"failed job", []answer{{500, nil, failed}}, "the server's export failed (HTTP 500 Internal Server Error): export job failed: disk full", false},
		{"failed job 400", []answer{{400, nil, failed}}, "the server's export failed (HTTP 400 Bad Request)", false},
		{"gone", []answer{{404, nil, ""}}, "HTTP 404 Not Found", true},
		{"410", []answer{{410, nil, ""}}, "HTTP 410 Gone", true},
		{"bare 500s", []answer{{500, nil, ""}, {502, nil, ""}, {500, nil, ""}, {500, nil, ""}, {500, nil, ""}}, "HTTP 500 Internal Server Error (5 times in a row)", false},
		{"not a manifest", []answer{{200, map[string]string{"Content-Type": "text/html"}, "<html>"}}, "is not a Bulk Data manifest", false},
		{"401", []answer{{401, nil, ""}}, "HTTP 401 Unauthorized", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := statusServer(t, tc.answers...)
			c, _ := fastClient(nil)
			_, err := c.Poll(context.Background(), srv.URL+"/s", time.Now(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrExpired) != tc.expired {
				t.Errorf("expired: %v", errors.Is(err, ErrExpired))
			}
			var be *Error
			if errors.As(err, &be) && be.JobFailed != strings.HasPrefix(tc.name, "failed job") {
				t.Errorf("JobFailed %v", be.JobFailed)
			}
		})
	}
	// The deadline: asked once more at it, then given up.
	srv, polls := statusServer(t, answer{202, map[string]string{"X-Progress": "half", "Retry-After": "3600"}, ""},
		answer{202, map[string]string{"X-Progress": "half", "Retry-After": "3600"}, ""})
	c, _ := fastClient(nil)
	start := time.Now()
	now := start
	c.Now = func() time.Time { return now }
	c.Sleep = func(_ context.Context, d time.Duration) error { now = now.Add(d); return nil }
	c.Timeout = time.Minute
	_, err := c.Poll(context.Background(), srv.URL+"/s", start, nil)
	var te *TimeoutError
	if !errors.As(err, &te) || err.Error() != "the server's export did not complete within 1m0s (last progress: half)" || *polls != 2 {
		t.Errorf("err %v after %d polls", err, *polls)
	}
	// Resumed after its deadline, a pull polls once: the export may be complete.
	srv, _ = statusServer(t, answer{200, nil, `{"transactionTime":"t","output":[],"error":[]}`})
	if _, err := c.Poll(context.Background(), srv.URL+"/s", start.Add(-time.Hour), nil); err != nil {
		t.Errorf("a complete export after the deadline: %v", err)
	}
	// A 503 that says when to come back is no failure, however often.
	answers := []answer{}
	for range 8 {
		answers = append(answers, answer{503, map[string]string{"Retry-After": "1"}, ""})
	}
	srv, _ = statusServer(t, append(answers, answer{200, nil, `{"transactionTime":"t","output":[],"error":[]}`})...)
	c, _ = fastClient(nil)
	if _, err := c.Poll(context.Background(), srv.URL+"/s", time.Now(), nil); err != nil {
		t.Errorf("8 busy answers: %v", err)
	}
}

func TestKickOff(t *testing.T) {
	var got []*http.Request
	var bodies []string
	codes := []int{429, 202}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, bodies = append(got, r), append(bodies, string(b))
		code := codes[0]
		codes = codes[1:]
		if code == 202 {
			w.Header().Set("Content-Location", "status/1?_jobId=a")
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	c, waits := fastClient(nil)
	req := Request{URL: srv.URL + "/fhir/Group/g1/$export", Post: true, Lenient: true,
		Params: []Param{{"_type", "Patient,Observation"}, {"patient", "p1"}, {"_since", "2026-01-01T00:00:00Z"}}}
	status, err := c.KickOff(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if status != srv.URL+"/fhir/Group/g1/status/1?_jobId=a" {
		t.Errorf("status URL %s", status)
	}
	if len(*waits) != 1 || got[1].Header.Get("Prefer") != "respond-async, handling=lenient" || got[1].Header.Get("Accept") != "application/fhir+json" {
		t.Errorf("waits %v, headers %v", *waits, got[1].Header)
	}
	want := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient,Observation"},{"name":"patient","valueReference":{"reference":"Patient/p1"}},{"name":"_since","valueInstant":"2026-01-01T00:00:00Z"}]}`
	if bodies[1] != want {
		t.Errorf("body\n%s\nwant\n%s", bodies[1], want)
	}
}

func TestKickOffRefusals(t *testing.T) {
	for _, tc := range []struct {
		code           int
		ctype, body    string
		want           string
		notBulk, na405 bool
	}{
		{200, "text/html", "<html>", "not a Bulk Data kick-off endpoint: HTTP 200 OK (text/html) instead of 202 Accepted", true, false},
		{200, "application/json", `{"a":1}`, "not a Bulk Data kick-off endpoint: HTTP 200 OK (application/json)", true, false},
		{404, "text/html", "<html>", "not a Bulk Data kick-off endpoint: HTTP 404 Not Found (text/html)", true, false},
		{405, "", "", "HTTP 405 Method Not Allowed", false, true},
		{400, "application/fhir+json", `{"resourceType":"OperationOutcome","issue":[{"code":"invalid","diagnostics":"_type: unknown type Foo"}]}`, "HTTP 400 Bad Request: _type: unknown type Foo", false, false},
		{202, "", "", "HTTP 202 without a Content-Location", false, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.ctype != "" {
				w.Header().Set("Content-Type", tc.ctype)
			}
			w.WriteHeader(tc.code)
			io.WriteString(w, tc.body)
		}))
		c, _ := fastClient(nil)
		_, err := c.KickOff(context.Background(), Request{URL: srv.URL + "/$export?secret=1"})
		srv.Close()
		var be *Error
		if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.want) || be.NotBulk != tc.notBulk || be.MethodRefused != tc.na405 {
			t.Errorf("%d %s: %v (%+v)", tc.code, tc.ctype, err, be)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the query leaks: %v", err)
		}
	}
}

func TestURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/fhir/$export":             "https://h/fhir",
		"https://h/fhir/Patient/$export":     "https://h/fhir",
		"https://h/fhir/Group/g-1/$export?x": "https://h/fhir",
		"https://h/$export":                  "https://h",
	} {
		if got := Base(in); got != want {
			t.Errorf("Base(%s) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]bool{
		"https://h/fhir/$export": true, "http://h/Group/1/$export?_type=A": true, "https://h/fhir/$export/": true,
		"https://h/fhir/manifest.json": false, "s3://b/$export": false, "/tmp/$export": false,
	} {
		if IsKickOff(in) != want {
			t.Errorf("IsKickOff(%s) = %v", in, !want)
		}
	}
	clean, user, pass, ok, err := Split("https://u:p%40ss@h/fhir/$export")
	if err != nil || clean != "https://h/fhir/$export" || user != "u" || pass != "p@ss" || !ok {
		t.Errorf("Split: %s %s %s %v %v", clean, user, pass, ok, err)
	}
	if _, _, _, _, err := Split("ftp://h/$export"); err == nil {
		t.Error("ftp taken")
	}
}
