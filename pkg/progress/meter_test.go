package progress_test

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/progress/progresstest"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestMeterLoad(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)}
	m := NewMeter("load ", "lines")
	m.Now = clock.now
	const size = 810_000_000
	m.Begin("Observation.ndjson.gz", 0, size)
	if got, want := m.Line(79), "load Observation.ndjson.gz  0 lines  0 B/810 MB  0%  0s elapsed"; got != want {
		t.Errorf("at the start:\n%q, want\n%q", got, want)
	}
	// 95 MB and 50,000 lines a second for 4 seconds, a report every 0.1 s.
	for i := 1; i <= 40; i++ {
		clock.advance(100 * time.Millisecond)
		m.Update(int64(i)*5000, int64(i)*9_500_000)
	}
	if got, want := m.Line(79), "load Observation.ndjson.gz  200,000 lines  380 MB/810 MB  46%  95 MB/s  ETA 5s"; got != want {
		t.Errorf("reading:\n%q, want\n%q", got, want)
	}
	if got, want := m.Line(200), "load Observation.ndjson.gz  200,000 lines  380 MB/810 MB  46%  95 MB/s  ETA 5s  4s elapsed"; got != want {
		t.Errorf("reading, wide:\n%q, want\n%q", got, want)
	}
	// All read: the server stores it, and only the clock moves.
	m.Update(1_011_108, size)
	m.SetPhase(Storing)
	clock.advance(14 * time.Second)
	if got, want := m.Line(79), "load Observation.ndjson.gz  1,011,108 lines  810 MB  storing… 14s"; got != want {
		t.Errorf("storing:\n%q, want\n%q", got, want)
	}
	clock.advance(time.Second)
	if got := m.Line(79); !strings.HasSuffix(got, "storing… 15s") {
		t.Errorf("the clock did not move: %q", got)
	}
	m.SetPhase(Finished)
	if got, want := m.Line(79), "load Observation.ndjson.gz  1,011,108 lines  810 MB  done in 19s"; got != want {
		t.Errorf("done:\n%q, want\n%q", got, want)
	}
	// A narrow terminal: the least useful figures go, the line fits.
	m.Begin("Observation.ndjson.gz", 0, size)
	for i := 1; i <= 20; i++ {
		clock.advance(100 * time.Millisecond)
		m.Update(int64(i)*5000, int64(i)*9_500_000)
	}
	for w := 79; w > 10; w-- {
		if got := m.Line(w); Width(got) > w {
			t.Errorf("Line(%d) is %d wide: %q", w, Width(got), got)
		}
	}
	if got, want := m.Line(39), "load Observation.ndjson.gz  23%"; got != want {
		t.Errorf("at 40 columns: %q, want %q", got, want)
	}
}

// Rows of a dump, an estimate of the total, bytes written.
func TestMeterDump(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)}
	m := NewMeter("dump ", "rows")
	m.Now = clock.now
	m.Begin("Observation", 1_000_000, 0)
	for i := 1; i <= 20; i++ {
		clock.advance(100 * time.Millisecond)
		m.Update(int64(i)*5000, int64(i)*4_000_000)
	}
	if got, want := m.Line(79), "dump Observation  100,000 rows  80 MB  10%  40 MB/s  ETA 18s  2s elapsed"; got != want {
		t.Errorf("%q, want\n%q", got, want)
	}
	// Beyond the estimate: no share, no ETA, the clock instead.
	m.Update(1_200_000, 960_000_000)
	if got := m.Line(79); strings.Contains(got, "%") || strings.Contains(got, "ETA") || !strings.HasSuffix(got, "elapsed") {
		t.Errorf("beyond the estimate: %q", got)
	}
	// Rows only (dump-sql to a pipe): a rate of rows.
	m = NewMeter("dump-sql", "rows")
	m.Now = clock.now
	m.Begin("", 0, 0)
	for i := 1; i <= 20; i++ {
		clock.advance(100 * time.Millisecond)
		m.Update(int64(i)*5231, -1)
	}
	if got, want := m.Line(79), "dump-sql  104,620 rows  52,300 rows/s  2s elapsed"; got != want {
		t.Errorf("%q, want\n%q", got, want)
	}
}

func TestRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var r Rate
	r.Add(t0, 0)
	if got := r.PerSecond(t0.Add(100 * time.Millisecond)); got != 0 {
		t.Errorf("in the first half second: %v", got)
	}
	for i := 1; i <= 100; i++ { // 10 s at 1,000 a second
		r.Add(t0.Add(time.Duration(i)*100*time.Millisecond), int64(i)*100)
	}
	if got := r.PerSecond(t0.Add(10 * time.Second)); got < 950 || got > 1050 {
		t.Errorf("steady: %v", got)
	}
	// Nothing moves for a while: the rate falls to 0.
	if got := r.PerSecond(t0.Add(20 * time.Second)); got != 0 {
		t.Errorf("stalled: %v", got)
	}
}

// Live redraws on its own: the clock moves while nothing is reported.
func TestLiveTicks(t *testing.T) {
	term := progresstest.New(80, 24)
	io.WriteString(term, "$ fhirbulk load big.ndjson\n")
	var renders atomic.Int64
	l := StartBlock(NewBlock(term), 5*time.Millisecond, func(w, n int) []string {
		k := renders.Add(1)
		return []string{strings.Repeat("x", 100) + " " + Count(k)}
	})
	deadline := time.Now().Add(5 * time.Second)
	for renders.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if renders.Load() < 5 {
		t.Fatalf("rendered %d times", renders.Load())
	}
	l.Println("fhirbulk: a warning")
	l.Stop()
	l.Stop()
	io.WriteString(term, "{\"total\":1}\n")
	if got, want := term.Text(), "$ fhirbulk load big.ndjson\nfhirbulk: a warning\n{\"total\":1}"; got != want {
		t.Errorf("screen:\n%s\nwant:\n%s", got, want)
	}
	var nilLive *Live
	nilLive.Redraw()
	nilLive.Println("x")
	nilLive.Stop()
}

func TestTerminals(t *testing.T) {
	a, b := progresstest.New(80, 24), progresstest.New(80, 24)
	if !IsTerminal(a) || IsTerminal(io.Discard) || IsTerminal(&strings.Builder{}) {
		t.Error("IsTerminal")
	}
	if w, h := Size(a); w != 80 || h != 24 {
		t.Errorf("Size: %d, %d", w, h)
	}
	if !SameTerminal(a, a) || SameTerminal(a, b) || SameTerminal(a, io.Discard) {
		t.Error("SameTerminal")
	}
}
