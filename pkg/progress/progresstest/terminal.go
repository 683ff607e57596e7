// Package progresstest is a terminal for tests of what pkg/progress and
// cmd draw: it keeps what a real one (tmux) would show, and what it would
// keep in its history.
package progresstest

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

// Terminal is a small terminal after tmux. It understands what the display
// writes (text; CR; LF as CR LF, the way a tty's onlcr sends it; ESC [ n A
// and ESC [ n B; ESC [ J; ESC [ K and ESC [ 2 K), wraps text at its width
// (a character that would straddle the edge goes to the next row whole; a
// row filled to the edge waits to wrap), scrolls what goes off the top into
// its history, and, as tmux does:
//   - rewraps its lines when made narrower or wider, keeping the cursor on
//     the screen row it was on (rows pushed above the screen go to the
//     history);
//   - on an erase to the end of the screen from the top-left corner, keeps
//     a copy of the screen in its history (scroll-on-clear).
//
// It is a progress.Screen, so a Block or cmd.Main can draw on it. It is
// safe for concurrent use.
type Terminal struct {
	mu     sync.Mutex
	w, h   int
	rows   []vtRow // history, then the screen from top
	top    int     // the index in rows of the screen's first row
	cy, cx int     // the cursor: an index into rows, a cell
	wait   bool    // the cursor is past the last cell, waiting to wrap
	esc    []byte  // an escape sequence being read
	out    strings.Builder
}

type vtRow struct {
	cells   []string // one entry per cell; "" is the right half of a wide character
	wrapped bool     // the line goes on in the next row
}

// New is a Terminal w cells wide and h rows high, empty.
func New(w, h int) *Terminal { return &Terminal{w: w, h: h, rows: []vtRow{{}}} }

// Size is the width and height.
func (t *Terminal) Size() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.w, t.h
}

// Write shows p.
func (t *Terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.out.Write(p)
	s := string(p)
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if t.esc != nil {
			t.esc = utf8.AppendRune(t.esc, r)
			if r >= '@' && r <= '~' && len(t.esc) > 1 {
				t.control(string(t.esc[1:len(t.esc)-1]), r)
				t.esc = nil
			}
			continue
		}
		switch r {
		case 0x1b:
			t.esc = []byte{}
		case '\r':
			t.cx, t.wait = 0, false
		case '\n':
			t.cx, t.wait = 0, false
			t.down()
		default:
			t.put(r)
		}
	}
	return len(p), nil
}

// down moves the cursor to the next row, scrolling the screen when it is
// on the last.
func (t *Terminal) down() {
	t.cy++
	if t.cy == len(t.rows) {
		t.rows = append(t.rows, vtRow{})
	}
	if t.cy-t.top >= t.h {
		t.top = t.cy - t.h + 1
	}
}

func (t *Terminal) control(params string, final rune) {
	n, err := strconv.Atoi(params)
	if err != nil || n < 1 {
		n = 1
	}
	switch final {
	case 'A':
		t.cy, t.wait = max(t.cy-n, t.top), false
	case 'B':
		t.cy, t.wait = min(t.cy+n, t.top+t.h-1, len(t.rows)-1), false
	case 'J': // to the end of the screen
		if t.cx == 0 && t.cy == t.top && !t.wait {
			// tmux's scroll-on-clear: the screen goes to the history.
			t.rows = append(t.rows[:t.bottom()], vtRow{})
			t.top, t.cy = len(t.rows)-1, len(t.rows)-1
			return
		}
		t.clearLine()
		t.rows[t.cy].wrapped = false
		t.rows = t.rows[:t.cy+1]
	case 'K':
		if params == "2" {
			t.rows[t.cy].cells = nil
			t.rows[t.cy].wrapped = false
			return
		}
		t.clearLine()
	}
}

// bottom is the index after the last row that holds something.
func (t *Terminal) bottom() int {
	n := len(t.rows)
	for n > t.top && len(t.rows[n-1].cells) == 0 && n-1 > t.cy {
		n--
	}
	return n
}

func (t *Terminal) clearLine() {
	row := &t.rows[t.cy]
	if t.cx < len(row.cells) {
		row.cells = row.cells[:t.cx]
	}
}

func (t *Terminal) put(r rune) {
	rw := progress.RuneWidth(r)
	if rw == 0 {
		return
	}
	if t.wait || t.cx+rw > t.w {
		t.rows[t.cy].wrapped = true
		t.down()
		t.cx, t.wait = 0, false
	}
	row := &t.rows[t.cy]
	for len(row.cells) < t.cx+rw {
		row.cells = append(row.cells, " ")
	}
	row.cells[t.cx] = string(r)
	if rw == 2 {
		row.cells[t.cx+1] = ""
	}
	t.cx += rw
	if t.cx == t.w {
		t.cx, t.wait = t.w-1, true
	}
}

// Resize gives the terminal a new width and rewraps every line; the cursor
// stays on the character it was on, and on the screen row it was on.
func (t *Terminal) Resize(w int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	screenRow := t.cy - t.top
	var lines [][]string
	curLine, curOff := 0, 0
	var cur []string
	for i, row := range t.rows {
		if i == t.cy {
			curLine, curOff = len(lines), len(cur)+t.cx
			if t.wait {
				curOff++
			}
		}
		cur = append(cur, row.cells...)
		if !row.wrapped {
			lines = append(lines, cur)
			cur = nil
		}
	}
	t.w, t.wait = w, false
	t.rows = nil
	for i, cells := range lines {
		row, col := vtRow{}, 0
		for j := 0; j < len(cells); {
			cw := 1
			if j+1 < len(cells) && cells[j+1] == "" {
				cw = 2
			}
			if col+cw > w {
				row.wrapped = true
				t.rows = append(t.rows, row)
				row, col = vtRow{}, 0
			}
			if i == curLine && j == curOff {
				t.cy, t.cx = len(t.rows), col
			}
			row.cells = append(row.cells, cells[j:j+cw]...)
			j += cw
			col += cw
		}
		t.rows = append(t.rows, row)
		if i == curLine && curOff >= len(cells) {
			t.cy, t.cx = len(t.rows)-1, col+curOff-len(cells)
			if t.cx >= w {
				t.cx, t.wait = w-1, true
			}
		}
	}
	if len(t.rows) == 0 {
		t.rows = []vtRow{{}}
	}
	t.top = max(t.cy-screenRow, 0)
}

func (t *Terminal) lines(from, to int) string {
	var lines []string
	for _, r := range t.rows[from:to] {
		lines = append(lines, strings.TrimRight(strings.Join(r.cells, ""), " "))
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines, "\n")
}

// Text is every row, the history's and the screen's, trailing spaces and
// empty rows at the end taken away.
func (t *Terminal) Text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines(0, len(t.rows))
}

// Screen is the rows on the screen, as Text.
func (t *Terminal) Screen() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines(t.top, min(t.top+t.h, len(t.rows)))
}

// History is the rows above the screen, as Text.
func (t *Terminal) History() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines(0, t.top)
}

// Written is every byte written to the terminal.
func (t *Terminal) Written() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}
