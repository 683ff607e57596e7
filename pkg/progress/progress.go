// Package progress is what a person watches while fhirbulk works: status
// lines on a terminal, redrawn in place, fitted to its width, ticking on
// their own, and cleared without a trace when the work is done; and the
// wording of counts, sizes, rates and times that the summary lines share
// with them (text.go).
//
// Only cmd uses it, and only on a terminal: IsTerminal and SameTerminal say
// when. Packages that do the work report through callbacks and know
// nothing of this.
//
// The lines are drawn here, on top of golang.org/x/term, not through
// github.com/schollz/progressbar/v3 (which drew them before), because that
// library cannot do four things the display needs:
//   - fit a line to the terminal: its description and a spinner's figures
//     are never cut, a line wider than the terminal wraps, and its clear (a
//     carriage return, spaces, a carriage return) then leaves the wrapped
//     rows on screen, above the JSON that follows;
//   - redraw a block of several lines (import's inputs, status --watch);
//   - tick on its own a bar of known size: its clock and figures froze
//     while the server stored what it had been sent;
//   - word its figures for a person ("(0/-, 0 resources/hr)").
package progress

import (
	"io"
	"os"
	"reflect"

	"golang.org/x/term"
)

// Screen is a writer that stands for a terminal without being one: tests
// hand one to cmd.Main as stdout or stderr. Size is its width and height in
// cells.
type Screen interface {
	io.Writer
	Size() (width, height int)
}

// IsTerminal reports whether w is a terminal (or a Screen).
func IsTerminal(w io.Writer) bool {
	switch t := w.(type) {
	case Screen:
		return true
	case *os.File:
		return t != nil && term.IsTerminal(int(t.Fd()))
	}
	return false
}

// Size is the width and height of the terminal w, in cells; 0, 0 when w is
// not a terminal or does not say.
func Size(w io.Writer) (width, height int) {
	switch t := w.(type) {
	case Screen:
		return t.Size()
	case *os.File:
		if t == nil {
			return 0, 0
		}
		if wd, h, err := term.GetSize(int(t.Fd())); err == nil {
			return wd, h
		}
	}
	return 0, 0
}

// SameTerminal reports whether a and b are both terminals, and the same
// one: what is written to one shows up among the lines drawn on the other.
func SameTerminal(a, b io.Writer) bool {
	if !IsTerminal(a) || !IsTerminal(b) {
		return false
	}
	fa, okA := a.(*os.File)
	fb, okB := b.(*os.File)
	if okA && okB {
		sa, errA := fa.Stat()
		sb, errB := fb.Stat()
		return errA == nil && errB == nil && os.SameFile(sa, sb)
	}
	if okA || okB {
		return false
	}
	// Two Screens: the same one if they are the same value (comparing
	// values of a type that cannot be compared would panic).
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}
