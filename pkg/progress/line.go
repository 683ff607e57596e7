package progress

import (
	"io"

	"github.com/schollz/progressbar/v3"
)

// barLine is a screen of one line drawn by progressbar/v3 in its spinner
// mode: each draw writes the line over the last and erases the rest of the
// row (ANSI codes), and Clear erases the row. The words are ours (a Meter's
// line) and cut to the terminal's width less the spinner's columns, so the
// line never wraps and a redraw leaves no debris.
type barLine struct {
	w     io.Writer
	size  func() (width, height int)
	bar   *progressbar.ProgressBar
	drawn bool
}

// spinnerCols is what progressbar puts before the words: a spinner frame
// and a space, and a space after them.
const spinnerCols = 4

func newBarLine(w io.Writer) *barLine {
	return &barLine{
		w:    w,
		size: func() (int, int) { return Size(w) },
		bar: progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionSpinnerType(14), // braille dots
			// 0: the spinner turns at each draw. With an interval
			// progressbar starts a goroutine of its own that redraws the
			// row on its own clock, without our lock and for good: the
			// line came back after Stop had erased it, and the race
			// detector saw it read the bar's state unlocked.
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionThrottle(0), // Live decides when to draw
		),
	}
}

func (b *barLine) Room() (width, lines int) {
	w, _ := b.size()
	if w <= 0 {
		w = 80
	}
	return max(w-spinnerCols, 1), 1
}

func (b *barLine) Draw(lines []string) error {
	if len(lines) == 0 {
		return b.Clear()
	}
	w, _ := b.Room()
	b.bar.Describe(Fit(lines[0], w))
	b.drawn = true
	return nil
}

func (b *barLine) Clear() error {
	if !b.drawn {
		return nil
	}
	b.drawn = false
	return b.bar.Clear()
}

func (b *barLine) Drawn() int {
	if b.drawn {
		return 1
	}
	return 0
}

func (b *barLine) writer() io.Writer { return b.w }
