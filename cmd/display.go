package cmd

// What a person sees on stderr while a command runs and when it is done:
// the live progress line, the summary line of an -o run, the refusal to
// write compressed data to a terminal. The drawing is pkg/progress; this
// decides when, and with which words.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// showProgress reports whether a live progress line may be drawn on stderr:
// stderr is a terminal, -q was not given, and, for a command that writes its
// data to stdout while the line is up (dataOnStdout), stdout is not that
// same terminal (the data would be spliced with the line's redraws).
func (a *app) showProgress(dataOnStdout bool) bool {
	if a.quiet || !progress.IsTerminal(a.stderr) {
		return false
	}
	return !dataOnStdout || !progress.SameTerminal(a.stdout, a.stderr)
}

// errCompressedTerminal is gzip's refusal: compressed bytes on a terminal
// are of no use to anyone, and may drive it.
var errCompressedTerminal = usagef("compressed data not written to a terminal (use -o FILE or a pipe)")

// refuseCompressedTerminal is errCompressedTerminal when the output is
// compressed and goes to stdout (no -o, or -o -), and stdout is a terminal.
func refuseCompressedTerminal(o *outputFlags, stdout io.Writer, isTerminal func(io.Writer) bool) error {
	if o.gzip && (o.path == "" || o.path == "-") && isTerminal(stdout) {
		return errCompressedTerminal
	}
	return nil
}

// countingWriter counts the bytes, and the lines when asked, written
// through it. The counts may be read while it is written to.
type countingWriter struct {
	w          io.Writer
	countLines bool
	n, lines   atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	if c.countLines {
		c.lines.Add(int64(bytes.Count(p[:n], []byte{'\n'})))
	}
	return n, err
}

// summarize prints the one line an -o run ends with, on stderr, so that a
// cron log says what happened:
//
//	dump Patient: 13 rows, 44 kB (9.1 kB gzipped) to patients.ndjson.gz in 0.2s
//
// It prints nothing with -q, or when the output went to stdout.
func (a *app) summarize(o *outputFlags, what string, n int64, unit string, written int64, took time.Duration) {
	if a.quiet || o.path == "" || o.path == "-" {
		return
	}
	fmt.Fprintln(a.stderr, summaryLine(what, n, unit, written, compressedSize(o), o.path, took))
}

// summaryLine words a summary; gz is the size of the file written when it
// is compressed (else < 0).
func summaryLine(what string, n int64, unit string, written, gz int64, path string, took time.Duration) string {
	size := progress.Bytes(written)
	if gz >= 0 {
		size += " (" + progress.Bytes(gz) + " gzipped)"
	}
	return fmt.Sprintf("%s: %s, %s to %s in %s", printable(what), progress.Plural(n, unit), size, printable(path), progress.Took(took))
}

// compressedSize is the size of the -o file when it was written
// compressed, else -1.
func compressedSize(o *outputFlags) int64 {
	if !o.gzip && !hasGzSuffix(o.path) {
		return -1
	}
	fi, err := os.Stat(o.path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

func hasGzSuffix(p string) bool { return len(p) > 3 && p[len(p)-3:] == ".gz" }

// loadDisplay shows the load of each source on one line of stderr:
//
//	load Observation.ndjson.gz  412,000 lines  310 MB/810 MB  38%  95 MB/s  ETA 5s
//	load Observation.ndjson.gz  1,011,108 lines  810 MB  storing… 14s
type loadDisplay struct {
	live  *progress.Live
	meter *progress.Meter

	mu      sync.Mutex
	current bool  // a source is being loaded (Begin was called for it)
	bytes   int64 // of the current source so far
}

// startLoadDisplay is the display of a load, or nil when none is shown.
// Its event method is a load.Loader's Progress.
func (a *app) startLoadDisplay() *loadDisplay {
	if !a.showProgress(false) {
		return nil
	}
	d := &loadDisplay{meter: progress.NewMeter("load ", "lines")}
	d.live = progress.StartLine(a.stderr, func(w int) string {
		if d.meter.Name() == "" {
			return ""
		}
		return d.meter.Line(w)
	})
	return d
}

func (d *loadDisplay) event(e load.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e.Phase {
	case load.Reading, load.Storing:
		// A source read again from the start (an HTTP body that broke off)
		// starts again too.
		if !d.current || e.BytesRead < d.bytes {
			d.meter.Begin(printable(e.Source), 0, e.Size)
			d.current = true
		}
		d.bytes = e.BytesRead
		d.meter.Update(e.Lines, e.BytesRead)
		if e.Phase == load.Storing {
			d.meter.SetPhase(progress.Storing)
		}
	case load.Done:
		d.meter.SetPhase(progress.Finished)
		d.current, d.bytes = false, 0
		d.live.Redraw()
	case load.Failed:
		d.current, d.bytes = false, 0
	}
}

// stop clears the line.
func (d *loadDisplay) stop() {
	if d != nil {
		d.live.Stop()
	}
}

// progressFunc is d.event, or nil without a display.
func (d *loadDisplay) progressFunc() func(load.Event) {
	if d == nil {
		return nil
	}
	return d.event
}

// rowsDisplay shows a dump's (or dump-sql's) rows and the bytes written:
//
//	dump Observation  412,000 rows  41%  310 MB  52,300 rows/s  ETA 6s
type rowsDisplay struct {
	live  *progress.Live
	meter *progress.Meter
	out   *countingWriter
}

// startRowsDisplay is the display of rows written to out, nil when none is
// shown (when the data goes to the terminal, or -q). total is how many are
// expected (<= 0: unknown).
func (a *app) startRowsDisplay(head, name string, total int64, o *outputFlags, out *countingWriter) *rowsDisplay {
	if !a.showProgress(o.path == "" || o.path == "-") {
		return nil
	}
	d := &rowsDisplay{meter: progress.NewMeter(head, "rows"), out: out}
	d.meter.Begin(name, total, 0)
	d.live = progress.StartLine(a.stderr, d.meter.Line)
	return d
}

// progressFunc is what dump.Options.Progress (and dumpsql's) is to be told:
// nil without a display.
func (d *rowsDisplay) progressFunc() func(rows int64) {
	if d == nil {
		return nil
	}
	return func(n int64) { d.meter.Update(n, d.out.n.Load()) }
}

func (d *rowsDisplay) stop() {
	if d != nil {
		d.live.Stop()
	}
}

// convertDisplay shows the source being converted: its lines, the bytes
// read of it and its size.
type convertDisplay struct {
	live  *progress.Live
	meter *progress.Meter
	out   *countingWriter

	mu   sync.Mutex
	src  *source.Reader
	base int64 // lines written before src
}

func (a *app) startConvertDisplay(o *outputFlags, out *countingWriter) *convertDisplay {
	if !a.showProgress(o.path == "" || o.path == "-") {
		return nil
	}
	d := &convertDisplay{meter: progress.NewMeter("convert ", "lines"), out: out}
	d.live = progress.StartLine(a.stderr, func(w int) string {
		d.mu.Lock()
		src, base := d.src, d.base
		d.mu.Unlock()
		if src == nil {
			return ""
		}
		d.meter.Update(d.out.lines.Load()-base, src.BytesRead())
		return d.meter.Line(w)
	})
	return d
}

// begin is told of each source as it opens.
func (d *convertDisplay) begin(src *source.Reader) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.src, d.base = src, d.out.lines.Load()
	d.mu.Unlock()
	d.meter.Begin(printable(src.Name()), 0, src.Size())
}

func (d *convertDisplay) stop() {
	if d != nil {
		d.live.Stop()
	}
}

// convertWhat names a conversion in its summary: "convert Patient.ndjson",
// "convert 3 files".
func convertWhat(names []string) string {
	if len(names) == 1 {
		return "convert " + names[0]
	}
	return fmt.Sprintf("convert %d files", len(names))
}
