package smart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxAnswer bounds what is read of a token or configuration answer: both
// are a few hundred bytes; a server that sends megabytes is not one.
const maxAnswer = 64 << 10

// Retries: a 429 or 503 is asked again up to maxRetries times, waiting what
// Retry-After says (capped at maxRetryAfter), else the backoff; a network
// error likewise, with the backoff.
const (
	maxRetries    = 3
	maxRetryAfter = 30 * time.Second
)

// backoff is the wait before retry n (0, 1, 2...) when the server gives no
// Retry-After; a variable so that tests need not wait.
var backoff = func(n int) time.Duration { return time.Duration(500<<n) * time.Millisecond }

// doRetry sends the request newReq makes (a fresh one for each try: a token
// request carries a new assertion each time, as a jti must not be reused)
// and retries 429, 503 and network errors. It returns the last response,
// whatever its status, or the last network error, whose text names the URL
// redacted, after where.
func doRetry(ctx context.Context, client *http.Client, now func() time.Time, where string, newReq func() (*http.Request, error)) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	if now == nil {
		now = time.Now
	}
	for try := 0; ; try++ {
		req, err := newReq()
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req.WithContext(ctx))
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if try >= maxRetries {
				return nil, netError(where, err)
			}
			wait = backoff(try)
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && try < maxRetries:
			wait = backoff(try)
			if d, ok := retryAfter(resp.Header.Get("Retry-After"), now()); ok {
				wait = min(d, maxRetryAfter)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
			resp.Body.Close()
		default:
			return resp, nil
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// netError says a request's network error without the URL's secrets: Go's
// *url.Error quotes the whole URL.
func netError(where string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s: %s", where, redactText(oneLine(err.Error(), 300)))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date (a date
// in the past is no wait).
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// readBounded reads a whole answer of at most maxAnswer bytes; noun says
// what it should have been.
func readBounded(resp *http.Response, what, noun string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %s", what, redactText(oneLine(err.Error(), 200)))
	}
	if len(b) > maxAnswer {
		return nil, fmt.Errorf("%s answered HTTP %d with over %d KiB, too large for %s", what, resp.StatusCode, maxAnswer>>10, noun)
	}
	return b, nil
}

// mediaType is the answer's Content-Type without parameters, fit to show.
func mediaType(resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return "no Content-Type"
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	return oneLine(ct, 60)
}

// redactURL shows u without user info, query string or fragment: the
// places where URLs carry secrets.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	s := v.String()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	if u.Fragment != "" {
		s += "#…"
	}
	return s
}

// redactString is redactURL for a URL not parsed yet; what does not parse
// loses everything up to its last '@' and from its first '?' or '#'.
func redactString(s string) string {
	if u, err := url.Parse(s); err == nil {
		return redactURL(u)
	}
	hidden := ""
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		hidden = s[i:i+1] + "…"
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			s = s[:j+3] + s[i+1:]
		} else {
			s = s[i+1:]
		}
	}
	return s + hidden
}

var urlInText = regexp.MustCompile("(?i)[a-z][a-z0-9+.-]*://[^\\s\"'<>`]*")

// redactText redacts every URL in free text (a server's description, a
// network error).
func redactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		core := strings.TrimRight(m, ".,:;!)]}")
		return redactString(core) + m[len(core):]
	})
}

// oneLine makes text from elsewhere (a server, a file) fit for a one-line
// message: control and format characters (a bidi override) and runs of
// white space become one space, and it is cut to n runes with "…".
func oneLine(s string, n int) string {
	t := strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	}), " ")
	if utf8.RuneCountInString(t) <= n {
		return t
	}
	return string([]rune(t)[:n]) + "…"
}
