package progress_test

import (
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/progress/progresstest"
)

// A status line drawn by progressbar: a long line is cut to the width, a
// redraw after a longer one leaves nothing of it, and Stop erases the row.
func TestStartLineLeavesNoDebris(t *testing.T) {
	term := progresstest.New(40, 10)
	io.WriteString(term, "$ fhirbulk load x\n")
	text := strings.Repeat("long words ", 10)
	live := progress.StartLine(term, func(width int) string { return text })
	live.Redraw()
	got := term.Text()
	if strings.Count(got, "\n") > 2 || !strings.Contains(got, "long words") {
		t.Fatalf("one cut line expected:\n%s", got)
	}
	for _, l := range strings.Split(got, "\n") {
		if len([]rune(l)) > 40 {
			t.Fatalf("a line wider than the terminal: %q", l)
		}
	}
	text = "short"
	live.Redraw()
	if got := term.Text(); strings.Contains(got, "long words") || !strings.Contains(got, "short") {
		t.Fatalf("after a shorter line:\n%s", got)
	}
	live.Stop()
	if got := strings.TrimSpace(term.Text()); got != "$ fhirbulk load x" {
		t.Fatalf("after Stop:\n%q", got)
	}
}

// A stopped status line stays erased: nothing of progressbar's goes on
// drawing it (its spinner goroutine did, every 100 ms, after Stop).
func TestStartLineStopsForGood(t *testing.T) {
	before := runtime.NumGoroutine()
	term := progresstest.New(40, 10)
	live := progress.StartLine(term, func(width int) string { return "storing" })
	live.Redraw()
	live.Stop()
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left running after Stop (%d before Start)", n, before)
	}
	if got := strings.TrimSpace(term.Text()); got != "" {
		t.Fatalf("after Stop: %q", got)
	}
}
