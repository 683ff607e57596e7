package smart

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fhirbulk/fhirbulk/pkg/source"
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

// defaultBackoff is the first wait before a retry when the server gives no
// Retry-After, doubled at each retry.
const defaultBackoff = 500 * time.Millisecond

// doRetry sends the request newReq makes (a fresh one for each try: a token
// request carries a new assertion each time, as a jti must not be reused)
// and retries 429, 503 and network errors. It returns the last response,
// whatever its status, or the last network error, whose text names the URL
// redacted, after where.
func doRetry(ctx context.Context, client *http.Client, now func() time.Time, backoff time.Duration, where string, newReq func() (*http.Request, error)) (*http.Response, error) {
	if backoff <= 0 {
		backoff = defaultBackoff
	}
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
			wait = backoff << try
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && try < maxRetries:
			wait = backoff << try
			if d, ok := source.RetryAfter(resp.Header.Get("Retry-After"), now()); ok {
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
	return fmt.Errorf("%s: %s", where, oneLine(source.NetMessage(err), 300))
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

// readBounded reads a whole answer of at most maxAnswer bytes; noun says
// what it should have been.
func readBounded(resp *http.Response, what, noun string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %s", what, source.RedactText(oneLine(err.Error(), 200)))
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
