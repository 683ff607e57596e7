package progress_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	. "github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/progress/progresstest"
)

// frame is what status --watch shows of an import at 80 columns: a header
// and inputs whose URLs make the lines wider than the terminal.
func frame(i int) []string {
	url := "https://bucket.s3.amazonaws.com/exports/2026-11-29/synthea/Observation.ndjson.gz?…"
	return []string{
		fmt.Sprintf("import synthea: in-progress, 1/3 inputs, %d resources (started 2026-11-29 14:02:11, %ds)", 1000*i, i),
		"  finished     Patient      " + url + "  13 resources in 0.2s",
		fmt.Sprintf("  in-progress  Observation  %s  %d resources, %d MB of 810 MB (%d%%)", url, 4000*i, 10*i, i),
		"  pending      Condition    " + url,
	}
}

// naive is how status --watch redrew before: up by the count of lines,
// erase to the end of the screen, the lines uncut.
type naive struct {
	w     io.Writer
	drawn int
}

func (n *naive) draw(lines []string) {
	if n.drawn > 0 {
		fmt.Fprintf(n.w, "\x1b[%dA\x1b[J", n.drawn)
	}
	text := strings.Join(lines, "\n") + "\n"
	io.WriteString(n.w, text)
	n.drawn = strings.Count(text, "\n")
}

// want is the screen a prompt and lines should leave, each line cut to the
// width less one column.
func want(prompt string, lines []string, width int) string {
	out := []string{prompt}
	for _, l := range lines {
		out = append(out, Fit(l, width-1))
	}
	return strings.Join(out, "\n")
}

func TestBlockRedrawLeavesNoCopies(t *testing.T) {
	term := progresstest.New(80, 24)
	io.WriteString(term, "$ fhirbulk status synthea --watch\n")
	b := NewBlock(term)
	for i := 1; i <= 5; i++ {
		if err := b.Draw(frame(i)); err != nil {
			t.Fatal(err)
		}
		if got, want := term.Text(), want("$ fhirbulk status synthea --watch", frame(i), 80); got != want {
			t.Fatalf("after frame %d the screen shows:\n%s\nwant:\n%s", i, got, want)
		}
	}
	for _, l := range strings.Split(term.Text(), "\n") {
		if Width(l) > 79 {
			t.Errorf("a line fills the width: %q", l)
		}
	}

	// The control: the old redraw, on the same terminal, leaves copies of
	// the header (the test can see the bug it guards against).
	old := progresstest.New(80, 24)
	io.WriteString(old, "$ fhirbulk status synthea --watch\n")
	n := &naive{w: old}
	for i := 1; i <= 5; i++ {
		n.draw(frame(i))
	}
	if c := strings.Count(old.Text(), "import synthea:"); c < 2 {
		t.Errorf("the control shows %d headers; the emulator no longer shows the bug:\n%s", c, old.Text())
	}
}

// A terminal made narrower between two redraws rewraps what is on it: the
// redraw counts the rows the lines take now. (Rows that the terminal pushed
// above the screen when it rewrapped are out of reach: what matters is the
// screen.)
func TestBlockRedrawAfterResize(t *testing.T) {
	for _, widths := range [][]int{{80, 40}, {80, 30, 100}, {120, 50}, {60, 25, 25}, {80, 79, 78}} {
		t.Run(fmt.Sprint(widths), func(t *testing.T) {
			term := progresstest.New(widths[0], 40)
			io.WriteString(term, "$ prompt\n")
			b := NewBlock(term)
			b.Draw(frame(1))
			for i, w := range widths[1:] {
				term.Resize(w)
				b.Draw(frame(i + 2))
				got := strings.TrimPrefix(term.Screen(), "$ prompt\n")
				if want := strings.TrimPrefix(want("", frame(i+2), w), "\n"); got != want {
					t.Fatalf("at %d columns the screen shows:\n%s\nwant:\n%s", w, term.Screen(), want)
				}
			}
			b.Clear()
			io.WriteString(term, "{\"total\":1}\n")
			if got := strings.TrimPrefix(term.Screen(), "$ prompt\n"); got != "{\"total\":1}" {
				t.Errorf("after Clear and a line of JSON:\n%s", term.Screen())
			}
		})
	}

	// The control: the same redraws, counting rows at the width the lines
	// were drawn at, leave copies on the screen.
	term := progresstest.New(80, 40)
	io.WriteString(term, "$ prompt\n")
	b := &Block{W: term, Size: func() (int, int) { return 80, 40 }}
	b.Draw(frame(1))
	term.Resize(40)
	b.Draw(frame(2))
	clean := progresstest.New(40, 40)
	(&Block{W: clean, Size: func() (int, int) { return 80, 40 }}).Draw(frame(2))
	if strings.TrimPrefix(term.Screen(), "$ prompt\n") == clean.Screen() {
		t.Errorf("the control left nothing behind:\n%s", term.Screen())
	}
}

// A block drawn from the top row of the screen (the prompt scrolled away)
// is redrawn without erasing the whole screen: tmux would keep a copy of
// every frame in its history.
func TestBlockFromTheTopRow(t *testing.T) {
	term := progresstest.New(80, 24)
	b := NewBlock(term)
	for i := 1; i <= 5; i++ {
		b.Draw(frame(i))
	}
	b.Draw(frame(6)[:2]) // fewer lines: the rest is erased
	if got, want := term.Text(), want("", frame(6)[:2], 80)[1:]; got != want {
		t.Errorf("the terminal holds:\n%s\nwant:\n%s", got, want)
	}
	b.Clear()
	if got := term.Text(); got != "" {
		t.Errorf("after Clear:\n%s", got)
	}

	// The control: erasing to the end of the screen from the corner.
	old := progresstest.New(80, 24)
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(old, "\r\x1b[J%s", strings.Join(frame(i), "\n"))
		io.WriteString(old, "\x1b[10A")
	}
	if old.History() == "" {
		t.Error("the control left no copies in the history")
	}
}

func TestBlockClearAndKeep(t *testing.T) {
	term := progresstest.New(80, 24)
	io.WriteString(term, "$ fhirbulk load big.ndjson\n")
	b := NewBlock(term)
	long := "load " + strings.Repeat("very-long-name-", 8) + ".ndjson  412,000 lines  310 MB/810 MB  38%  95 MB/s  ETA 5s"
	b.Draw([]string{long})
	b.Draw([]string{long + "x"})
	b.Clear()
	io.WriteString(term, "{\"Observation\":412000}\n")
	if got := term.Text(); got != "$ fhirbulk load big.ndjson\n{\"Observation\":412000}" {
		t.Errorf("the bar left something:\n%s", got)
	}

	b.Draw([]string{"a", "b"})
	b.Keep()
	io.WriteString(term, "after\n")
	if got := term.Text(); !strings.HasSuffix(got, "\na\nb\nafter") {
		t.Errorf("Keep:\n%s", got)
	}
}

// A block taller than the screen could not be gone back over: it is cut to
// the screen's height less one row.
func TestBlockHeight(t *testing.T) {
	term := progresstest.New(80, 5)
	b := NewBlock(term)
	lines := []string{"1", "2", "3", "4", "5", "6", "7"}
	b.Draw(lines)
	b.Draw(lines)
	if got := term.Text(); got != "1\n2\n3\n4" {
		t.Errorf("screen:\n%s", got)
	}
}
