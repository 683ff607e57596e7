// Package progress draws progress bars on a terminal and nothing elsewhere.
// A nil *Bar is valid and does nothing, so callers never branch on whether
// progress is shown.
package progress

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Enabled reports whether bars should be drawn on w: only when w is a
// terminal and the user did not ask for quiet.
func Enabled(w io.Writer, quiet bool) bool {
	if quiet {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Bar counts items (rows, resources) towards an optional total.
type Bar struct {
	bar   *progressbar.ProgressBar
	total int64
	n     int64
}

// New returns a bar on w counting items (unit names them), or nil when
// !enabled. total <= 0 means unknown (a spinner with a count and a rate); a
// total that turns out too small grows.
func New(w io.Writer, enabled bool, total int64, desc, unit string) *Bar {
	return newBar(w, enabled, total, desc,
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit))
}

// NewBytes returns a bar on w counting bytes, or nil when !enabled.
func NewBytes(w io.Writer, enabled bool, total int64, desc string) *Bar {
	return newBar(w, enabled, total, desc, progressbar.OptionShowBytes(true), progressbar.OptionShowCount())
}

func newBar(w io.Writer, enabled bool, total int64, desc string, opts ...progressbar.Option) *Bar {
	if !enabled {
		return nil
	}
	if total <= 0 {
		total = -1
	}
	opts = append(opts,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)
	return &Bar{total: total, bar: progressbar.NewOptions64(total, opts...)}
}

// Set moves the bar to n and, when desc is not empty, changes its text.
func (b *Bar) Set(n int64, desc string) {
	if b == nil {
		return
	}
	b.n = n
	if desc != "" {
		b.bar.Describe(desc)
	}
	b.sync()
}

// Add counts n more items. It is cheap enough for once per row: the bar is
// redrawn only every 4096 items (and at most every 100 ms).
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	before := b.n
	b.n += n
	if b.n>>12 != before>>12 {
		b.sync()
	}
}

func (b *Bar) sync() {
	if b.total > 0 && b.n > b.total {
		b.total = b.n
		b.bar.ChangeMax64(b.total)
	}
	b.bar.Set64(b.n) //nolint:errcheck // drawing on stderr; nothing to do on failure
}

// Finish clears the bar.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.sync()
	b.bar.Finish() //nolint:errcheck // with OptionClearOnFinish: erases the bar
}
