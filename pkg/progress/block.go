package progress

import (
	"fmt"
	"io"
	"strings"
)

// Block is a few lines on a terminal, redrawn in place.
//
// Each line is cut to the terminal's width less one column (a line that
// fills the last column leaves some terminals waiting to wrap, and the next
// character lands on another row), so at the width it was drawn at every
// line takes one row. The cursor is left at the end of the last line, never
// below it. A redraw goes back up to the first line and writes over the
// lines, erasing the rest of each row; a clear erases the rows one by one
// from the last up. To go back up it counts the rows the lines take at
// the terminal's width now: a terminal made narrower since rewraps them
// (tmux, VTE, iTerm2, Windows Terminal do), and going up by the count of
// lines instead would leave a copy of the top rows on screen at every
// redraw.
//
// It never erases "to the end of the screen" from the top-left corner:
// tmux (scroll-on-clear, on by default) takes that for a cleared screen and
// keeps a copy of it in its history, which at every redraw of a block
// drawn from the top row would fill the history with copies.
//
// A Block is not safe for concurrent use (Live serializes it).
type Block struct {
	W io.Writer
	// Size is the terminal's size now, asked at every redraw; 0 for what
	// it does not know (80 columns, 24 rows are assumed).
	Size func() (width, height int)

	drawn []string // the lines on screen, as drawn (cut to the width)
}

// NewBlock is a Block on the terminal w.
func NewBlock(w io.Writer) *Block {
	return &Block{W: w, Size: func() (int, int) { return Size(w) }}
}

// size is the terminal's size with the defaults filled in.
func (b *Block) size() (width, height int) {
	if b.Size != nil {
		width, height = b.Size()
	}
	if width <= 0 {
		width = 80
	}
	if height <= 0 {
		height = 24
	}
	return width, height
}

// Room is the width and the number of lines a Draw shows whole: one column
// and one row less than the terminal's (the row the shell's prompt was on
// stays; a taller block could not be gone back over).
func (b *Block) Room() (width, lines int) {
	w, h := b.size()
	return max(w-1, 1), max(h-1, 1)
}

// Draw replaces the lines on screen with lines: each is cut to the
// terminal's width, and lines beyond what fits on the screen are left out
// (the caller should say what it left out, see Room).
func (b *Block) Draw(lines []string) error {
	if len(lines) == 0 {
		return b.Clear()
	}
	w, lim := b.Room()
	if len(lines) > lim {
		lines = lines[:lim]
	}
	var out strings.Builder
	rows := b.up(&out)
	fitted := make([]string, len(lines))
	for i, l := range lines {
		fitted[i] = Fit(l, w)
		if fitted[i] == "" {
			fitted[i] = " " // the cursor never ends in the first column (see below)
		}
		if i > 0 {
			out.WriteByte('\n')
		}
		out.WriteString(fitted[i])
		out.WriteString("\x1b[K") // the rest of the row
	}
	if rows > len(fitted) {
		// Rows of the lines before are left below: erase to the end of
		// the screen, from the end of a line that is not empty (not the
		// top-left corner, see the type's comment).
		out.WriteString("\x1b[J")
	}
	b.drawn = fitted
	return b.write(out.String())
}

// Clear erases the lines; the cursor is left where the first one began.
func (b *Block) Clear() error {
	var out strings.Builder
	rows := b.up(nil)
	if rows > 0 {
		out.WriteString("\r\x1b[2K")
		for range rows - 1 {
			out.WriteString("\x1b[A\x1b[2K")
		}
	}
	b.drawn = nil
	return b.write(out.String())
}

// Keep leaves the lines on screen, for good, and moves the cursor below
// them.
func (b *Block) Keep() error {
	if len(b.drawn) == 0 {
		return nil
	}
	b.drawn = nil
	return b.write("\n")
}

// Drawn is how many lines are on screen.
func (b *Block) Drawn() int { return len(b.drawn) }

func (b *Block) writer() io.Writer { return b.W }

// up counts the rows the lines on screen take now and, when out is not
// nil, writes what takes the cursor from the end of the last back to the
// beginning of the first.
func (b *Block) up(out *strings.Builder) (rows int) {
	if len(b.drawn) == 0 {
		return 0
	}
	w, _ := b.size()
	for _, l := range b.drawn {
		rows += Rows(l, w)
	}
	if out != nil {
		out.WriteByte('\r')
		if rows > 1 {
			fmt.Fprintf(out, "\x1b[%dA", rows-1)
		}
	}
	return rows
}

func (b *Block) write(s string) error {
	if s == "" {
		return nil
	}
	_, err := io.WriteString(b.W, s)
	return err
}
