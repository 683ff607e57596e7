// Package bulkclient is the client side of the HL7 Bulk Data Access
// protocol (the IG's export.html, STU2 and the STU3 additions): kick off
// an $export, poll its status URL until the manifest comes, follow the
// manifest's pages, and release the job with DELETE. Downloading the files
// is the sources' work (pkg/source); credentials go with requests through
// Transport, which keeps them to the origins they belong to.
//
// It does what servers in the field need beyond the IG's letter: a status
// URL with a query string (HAPI) is used as given and a relative one is
// resolved; Retry-After in seconds or as a date is honoured, and without
// one the delay doubles from 1 s up to MaxDelay; 429 waits; an
// OperationOutcome whose issue code is "transient" means try again, any
// other error answer is the job's failure, and a bare 5xx is tried a few
// times before it counts as one; a 200 whose X-Export-Status says 202 is
// still running; a manifest's "link" pages (relation "next") are read and
// joined into one.
package bulkclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Param is a kick-off parameter: _type, _since, patient, ...
type Param struct{ Name, Value string }

// Request is a kick-off.
type Request struct {
	URL     string // the kick-off endpoint, without user info (see Split)
	Post    bool   // POST a Parameters resource (else GET with a query)
	Params  []Param
	Lenient bool // Prefer: handling=lenient
}

// Client talks to one Bulk Data server. Its zero value is not usable: use
// New.
type Client struct {
	HTTP      *http.Client
	Transport *Transport
	// Timeout bounds the whole export, from its kick-off (Poll's since).
	Timeout time.Duration
	// MaxDelay caps the delay between polls without a Retry-After.
	MaxDelay time.Duration
	// MaxRetryAfter caps a server's Retry-After.
	MaxRetryAfter time.Duration
	// Tries bounds the tries of one request that fails with a bare 5xx, a
	// network error, or a 429/503 at kick-off.
	Tries int
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// New is a client whose requests carry auth's credentials to the origins
// trusted (the kick-off URL's; the status URL's is added by KickOff).
func New(auth Auth, base http.RoundTripper, trusted ...string) *Client {
	t := &Transport{Base: base, Auth: auth}
	for _, u := range trusted {
		t.Trust(u)
	}
	return &Client{
		HTTP:      &http.Client{Transport: t, CheckRedirect: noReferer},
		Transport: t, Timeout: 24 * time.Hour, MaxDelay: 2 * time.Minute, MaxRetryAfter: time.Hour, Tries: 5,
		Now: time.Now, Sleep: sleep,
	}
}

// noReferer keeps a URL's query (a pre-signed signature) from the next host.
func noReferer(req *http.Request, via []*http.Request) error {
	req.Header.Del("Referer")
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requestTimeout bounds one request of the protocol (not a file).
const requestTimeout = 2 * time.Minute

// minPoll is the least time between two polls.
const minPoll = 50 * time.Millisecond

// maxBody bounds an answer read whole: an OperationOutcome, a manifest page.
const maxBody = bulkdata.MaxFileSize

// Error is an answer of the server that ends the work: a refused kick-off,
// a failed job. Its message is one line: what was asked, the HTTP status,
// and the server's own words (an OperationOutcome's diagnostics).
type Error struct {
	Op     string // "kick-off", "status", "manifest", "cancel"
	URL    string // redacted
	Status int
	Reason string // "HTTP 400 Bad Request", or what went wrong
	Text   string // the server's diagnostics, one line
	// NotBulk: the kick-off URL answered as something else than a Bulk
	// Data endpoint (HTML, plain JSON, a 404 without an OperationOutcome).
	NotBulk bool
	// MethodRefused: the server refused the kick-off's method (405).
	MethodRefused bool
	// JobFailed: the server says the export itself failed (an error answer
	// with an OperationOutcome that is not transient): polling it again
	// cannot help. Any other error of a poll (a 401, a network that stays
	// down) leaves the export where it was, to be polled again later.
	JobFailed bool
}

func (e *Error) Error() string {
	s := e.Op + " " + e.URL + ": " + e.Reason
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// ErrExpired is wrapped by the error of a status URL (or a file) that the
// server no longer knows: a 404 or 410, the export expired or was deleted.
var ErrExpired = errors.New("the export is gone from the server (expired or deleted)")

// TimeoutError is an export that did not complete within Client.Timeout.
type TimeoutError struct {
	After    time.Duration
	Progress string
}

func (e *TimeoutError) Error() string {
	s := fmt.Sprintf("the server's export did not complete within %s", e.After)
	if e.Progress != "" {
		s += " (last progress: " + e.Progress + ")"
	}
	return s
}

// Split takes user info out of a kick-off URL: basic auth's user and
// password (ok when there was a user), and the URL without them.
func Split(raw string) (clean, user, password string, ok bool, err error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", "", "", false, fmt.Errorf("%s: not a URL", source.Redact(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", "", "", false, fmt.Errorf("%s: not an http(s) URL", source.Redact(raw))
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
		ok = true
		u.User = nil
	}
	return u.String(), user, password, ok, nil
}

// Base is the FHIR base of a kick-off URL: [base]/$export,
// [base]/Patient/$export and [base]/Group/ID/$export give [base]; any
// other path loses its last segment.
func Base(kickOff string) string {
	u, err := url.Parse(kickOff)
	if err != nil {
		return kickOff
	}
	u.RawQuery, u.Fragment = "", ""
	p := strings.TrimSuffix(u.Path, "/")
	segs := strings.Split(p, "/")
	n := len(segs)
	switch {
	case n >= 3 && segs[n-3] == "Group" && segs[n-1] == "$export":
		segs = segs[:n-3]
	case n >= 2 && segs[n-2] == "Patient" && segs[n-1] == "$export":
		segs = segs[:n-2]
	case n >= 1:
		segs = segs[:n-1]
	}
	u.Path = strings.Join(segs, "/")
	u.RawPath = ""
	return strings.TrimSuffix(u.String(), "/")
}

// IsKickOff reports whether raw is an http(s) URL whose last path segment
// is $export: a Bulk Data kick-off endpoint.
func IsKickOff(raw string) bool {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	p := strings.TrimSuffix(u.Path, "/")
	return p == "/$export" || strings.HasSuffix(p, "/$export")
}

// KickOff starts the export of req and returns its status URL (absolute),
// whose origin it trusts from then on. A 429 or 503 waits (Retry-After)
// and tries again, up to Tries times.
func (c *Client) KickOff(ctx context.Context, req Request) (string, error) {
	shown := source.Redact(req.URL)
	delay := time.Second
	for try := 1; ; try++ {
		hr, err := c.kickOffRequest(ctx, req)
		if err != nil {
			return "", err
		}
		resp, err := c.HTTP.Do(hr)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if try >= c.Tries {
				return "", &Error{Op: "kick-off", URL: shown, Reason: source.NetMessage(err) + fmt.Sprintf(" (gave up after %d tries)", try)}
			}
		} else {
			status, ok, err := c.kickOffAnswer(req, resp, shown)
			if ok || err != nil {
				return status, err
			}
			if try >= c.Tries {
				return "", &Error{Op: "kick-off", URL: shown, Status: resp.StatusCode,
					Reason: "HTTP " + resp.Status + fmt.Sprintf(" (gave up after %d tries)", try)}
			}
			if ra, ok := source.RetryAfter(resp.Header.Get("Retry-After"), c.Now()); ok {
				delay = min(ra, c.MaxRetryAfter)
			}
		}
		if err := c.Sleep(ctx, delay); err != nil {
			return "", err
		}
		delay = min(delay*2, c.MaxDelay)
	}
}

func (c *Client) kickOffRequest(ctx context.Context, req Request) (*http.Request, error) {
	var hr *http.Request
	var err error
	if req.Post {
		body, _ := json.Marshal(parameters(req.Params)) // strings
		hr, err = http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(body))
		if err == nil {
			hr.Header.Set("Content-Type", "application/fhir+json")
		}
	} else {
		u, perr := url.Parse(req.URL)
		if perr != nil {
			return nil, &Error{Op: "kick-off", URL: source.Redact(req.URL), Reason: "not a URL"}
		}
		q := u.Query()
		for _, p := range req.Params {
			q.Add(p.Name, p.Value)
		}
		u.RawQuery = q.Encode()
		hr, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	}
	if err != nil {
		return nil, &Error{Op: "kick-off", URL: source.Redact(req.URL), Reason: source.NetMessage(err)}
	}
	hr.Header.Set("Accept", "application/fhir+json")
	prefer := "respond-async"
	if req.Lenient {
		prefer += ", handling=lenient"
	}
	hr.Header.Set("Prefer", prefer)
	return hr, nil
}

// parameters is req's Parameters resource (the POST kick-off body):
// patient is a reference, _since and _until instants, the rest strings.
func parameters(params []Param) any {
	type param struct {
		Name           string `json:"name"`
		ValueString    string `json:"valueString,omitempty"`
		ValueInstant   string `json:"valueInstant,omitempty"`
		ValueCode      string `json:"valueCode,omitempty"`
		ValueReference *struct {
			Reference string `json:"reference"`
		} `json:"valueReference,omitempty"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Parameter    []param `json:"parameter"`
	}{ResourceType: "Parameters", Parameter: []param{}}
	for _, p := range params {
		v := param{Name: p.Name}
		switch p.Name {
		case "patient":
			ref := p.Value
			if !strings.Contains(ref, "/") {
				ref = "Patient/" + ref
			}
			v.ValueReference = &struct {
				Reference string `json:"reference"`
			}{ref}
		case "_since", "_until":
			v.ValueInstant = p.Value
		case "includeAssociatedData":
			v.ValueCode = p.Value
		default:
			v.ValueString = p.Value
		}
		out.Parameter = append(out.Parameter, v)
	}
	return out
}

// kickOffAnswer reads a kick-off's answer: the status URL (ok), a refusal
// (err), or neither: a 429 or 503 to try again.
func (c *Client) kickOffAnswer(req Request, resp *http.Response, shown string) (string, bool, error) {
	defer drainClose(resp)
	switch code := resp.StatusCode; {
	case code == http.StatusAccepted:
		loc := resp.Header.Get("Content-Location")
		if loc == "" {
			return "", false, &Error{Op: "kick-off", URL: shown, Status: code, Reason: "HTTP 202 without a Content-Location (no status URL to poll)"}
		}
		base, _ := url.Parse(req.URL)
		u, err := base.Parse(loc)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return "", false, &Error{Op: "kick-off", URL: shown, Status: code, Reason: "HTTP 202 with a Content-Location that is not an http(s) URL: " + source.Redact(loc)}
		}
		c.Transport.Trust(u.String())
		return u.String(), true, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return "", false, nil
	case code == http.StatusMethodNotAllowed:
		e := c.answerError("kick-off", shown, resp)
		e.MethodRefused = true
		return "", false, e
	case code >= 200 && code < 300:
		return "", false, &Error{Op: "kick-off", URL: shown, Status: code, NotBulk: true,
			Reason: fmt.Sprintf("not a Bulk Data kick-off endpoint: HTTP %s (%s) instead of 202 Accepted", resp.Status, mediaType(resp))}
	default:
		e := c.answerError("kick-off", shown, resp)
		if e.Text == "" && (code == http.StatusNotFound || !isJSON(resp)) {
			e.NotBulk = code == http.StatusNotFound
			if e.NotBulk {
				e.Reason = fmt.Sprintf("not a Bulk Data kick-off endpoint: HTTP %s (%s)", resp.Status, mediaType(resp))
			}
		}
		return "", false, e
	}
}

// answerError is an error answer, with the diagnostics of its
// OperationOutcome when it has one.
func (c *Client) answerError(op, shown string, resp *http.Response) *Error {
	e := &Error{Op: op, URL: shown, Status: resp.StatusCode, Reason: "HTTP " + resp.Status}
	if oo, ok := readOutcome(resp); ok {
		e.Text = oo.text()
	}
	return e
}

// Progress is what a poll learned of a running export.
type Progress struct {
	Text  string        // X-Progress, made fit to show
	Polls int           // polls so far
	Next  time.Duration // until the next poll
}

// Complete is a completed export.
type Complete struct {
	Manifest *bulkdata.Manifest // every page joined
	Raw      []byte             // Manifest as JSON
	Expires  time.Time          // zero when the server gave no Expires
}

// Poll polls statusURL until the export completes, fails, expires or takes
// longer than Timeout from since (its kick-off), calling progress after
// each poll that finds it running.
func (c *Client) Poll(ctx context.Context, statusURL string, since time.Time, progress func(Progress)) (*Complete, error) {
	shown := source.Redact(statusURL)
	deadline := since.Add(c.Timeout)
	delay, fails, polls := time.Second, 0, 0
	var last string
	for {
		// Asked at least once: a pull resumed after the deadline may find
		// its export complete.
		wait, done, err := c.poll(ctx, statusURL, shown, &fails, &last)
		polls++
		if err != nil || done != nil {
			return done, err
		}
		if !c.Now().Before(deadline) {
			return nil, &TimeoutError{After: c.Timeout, Progress: last}
		}
		if wait < 0 {
			wait = delay
			delay = min(delay*2, c.MaxDelay)
		}
		// A Retry-After of 0 is no reason to hammer the server.
		wait = max(min(wait, c.MaxRetryAfter, max(deadline.Sub(c.Now()), 0)), minPoll)
		if progress != nil {
			progress(Progress{Text: last, Polls: polls, Next: wait})
		}
		if err := c.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// poll asks once. It returns the manifest when complete, or how long to
// wait (-1: the caller's backoff) before asking again.
func (c *Client) poll(ctx context.Context, statusURL, shown string, fails *int, last *string) (time.Duration, *Complete, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, statusURL, nil)
	if err != nil {
		return 0, nil, &Error{Op: "status", URL: shown, Reason: source.NetMessage(err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		if *fails++; *fails >= c.Tries {
			return 0, nil, &Error{Op: "status", URL: shown, Reason: source.NetMessage(err) + fmt.Sprintf(" (%d times in a row)", *fails)}
		}
		return -1, nil, nil
	}
	defer drainClose(resp)
	retry := time.Duration(-1)
	if ra, ok := source.RetryAfter(resp.Header.Get("Retry-After"), c.Now()); ok {
		retry = ra
	}
	code := resp.StatusCode
	if code == http.StatusOK && strings.TrimSpace(resp.Header.Get("X-Export-Status")) == "202" {
		code = http.StatusAccepted // Prefer: separate-export-status
	}
	switch {
	case code == http.StatusAccepted:
		*fails = 0
		if p := resp.Header.Get("X-Progress"); p != "" {
			*last = Printable(p, 100)
		}
		return retry, nil, nil
	case code == http.StatusOK:
		m, raw, err := c.manifest(ctx, resp, shown)
		if err != nil {
			return 0, nil, err
		}
		done := &Complete{Manifest: m, Raw: raw}
		if t, err := http.ParseTime(resp.Header.Get("Expires")); err == nil {
			done.Expires = t
		}
		return 0, done, nil
	case code == http.StatusNotFound || code == http.StatusGone:
		e := c.answerError("status", shown, resp)
		return 0, nil, fmt.Errorf("%w: %w", ErrExpired, e)
	case code == http.StatusTooManyRequests:
		return retry, nil, nil
	}
	oo, hasOO := readOutcome(resp)
	switch {
	case hasOO && oo.transient():
		*fails = 0
		return retry, nil, nil
	case hasOO:
		e := &Error{Op: "status", URL: shown, Status: code, Reason: "the server's export failed (HTTP " + resp.Status + ")", Text: oo.text(), JobFailed: true}
		return 0, nil, e
	case code >= 500 && retry >= 0:
		return retry, nil, nil // busy, and says when to come back
	case code >= 500:
		if *fails++; *fails >= c.Tries {
			return 0, nil, &Error{Op: "status", URL: shown, Status: code, Reason: fmt.Sprintf("HTTP %s (%d times in a row)", resp.Status, *fails)}
		}
		return retry, nil, nil
	}
	return 0, nil, &Error{Op: "status", URL: shown, Status: code, Reason: "HTTP " + resp.Status}
}

// manifest reads a complete status's manifest, and its further pages.
func (c *Client) manifest(ctx context.Context, resp *http.Response, shown string) (*bulkdata.Manifest, []byte, error) {
	m, next, err := readPage(resp, shown)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for page := 2; next != ""; page++ {
		if seen[next] || page > 10000 {
			return nil, nil, &Error{Op: "manifest", URL: shown, Reason: "its pages (link next) go round in a circle"}
		}
		seen[next] = true
		more, after, err := c.page(ctx, next)
		if err != nil {
			return nil, nil, err
		}
		m.Output = append(m.Output, more.Output...)
		m.Deleted = append(m.Deleted, more.Deleted...)
		m.Error = append(m.Error, more.Error...)
		next = after
	}
	raw, err := json.Marshal(m)
	return m, raw, err
}

func (c *Client) page(ctx context.Context, pageURL string) (*bulkdata.Manifest, string, error) {
	shown := source.Redact(pageURL)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return nil, "", &Error{Op: "manifest", URL: shown, Reason: source.NetMessage(err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", &Error{Op: "manifest", URL: shown, Reason: source.NetMessage(err)}
	}
	defer drainClose(resp)
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		return nil, "", fmt.Errorf("%w: %w", ErrExpired, c.answerError("manifest", shown, resp))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", c.answerError("manifest", shown, resp)
	}
	return readPage(resp, shown)
}

// readPage reads one manifest page and its next page's URL (resolved
// against the page's).
func readPage(resp *http.Response, shown string) (*bulkdata.Manifest, string, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, "", &Error{Op: "manifest", URL: shown, Reason: source.NetMessage(err)}
	}
	if len(data) > maxBody {
		return nil, "", &Error{Op: "manifest", URL: shown, Reason: fmt.Sprintf("over %d MiB", maxBody>>20)}
	}
	if !bulkdata.IsManifest(data) {
		return nil, "", &Error{Op: "manifest", URL: shown, Status: resp.StatusCode,
			Reason: fmt.Sprintf("HTTP %s (%s) is not a Bulk Data manifest (no \"output\")", resp.Status, mediaType(resp))}
	}
	m, err := bulkdata.ParseManifest(data)
	if err != nil {
		return nil, "", &Error{Op: "manifest", URL: shown, Reason: err.Error()}
	}
	var links struct {
		Link []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
	}
	json.Unmarshal(data, &links) // a manifest without links has none
	for _, l := range links.Link {
		if l.Relation == "next" && l.URL != "" {
			u, err := resp.Request.URL.Parse(l.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, "", &Error{Op: "manifest", URL: shown, Reason: "its next page is not an http(s) URL: " + source.Redact(l.URL)}
			}
			return m, u.String(), nil
		}
	}
	return m, "", nil
}

// Cancel sends DELETE to statusURL: the server cancels a running export,
// or deletes a finished one's files. An export already gone (404, 410) is
// no error.
func (c *Client) Cancel(ctx context.Context, statusURL string) error {
	shown := source.Redact(statusURL)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodDelete, statusURL, nil)
	if err != nil {
		return &Error{Op: "cancel", URL: shown, Reason: source.NetMessage(err)}
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &Error{Op: "cancel", URL: shown, Reason: source.NetMessage(err)}
	}
	defer drainClose(resp)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300, code == http.StatusNotFound, code == http.StatusGone:
		return nil
	}
	return c.answerError("cancel", shown, resp)
}

// outcome is what is read of an OperationOutcome.
type outcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Code        string `json:"code"`
		Diagnostics string `json:"diagnostics"`
		Details     struct {
			Text string `json:"text"`
		} `json:"details"`
	} `json:"issue"`
}

// readOutcome reads an answer's OperationOutcome, if it is one.
func readOutcome(resp *http.Response) (outcome, bool) {
	var oo outcome
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || json.Unmarshal(data, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return outcome{}, false
	}
	return oo, true
}

// transient reports whether every issue says "try again later".
func (oo outcome) transient() bool {
	for _, is := range oo.Issue {
		if is.Code != "transient" {
			return false
		}
	}
	return len(oo.Issue) > 0
}

// text is the issues' words, in one line.
func (oo outcome) text() string {
	var parts []string
	for _, is := range oo.Issue {
		t := is.Diagnostics
		if t == "" {
			t = is.Details.Text
		}
		if t == "" {
			t = is.Code
		}
		if t != "" {
			parts = append(parts, t)
		}
	}
	return Printable(strings.Join(parts, "; "), 300)
}

// Printable is s from a server made fit for one line of a terminal: no
// control characters, spaces collapsed, a URL's secrets redacted, cut to
// max runes.
func Printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(source.RedactText(s)), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

func mediaType(resp *http.Response) string {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt == "" {
		return "no content type"
	}
	return mt
}

func isJSON(resp *http.Response) bool {
	mt := mediaType(resp)
	return strings.HasSuffix(mt, "json")
}

func drainClose(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
