package ndjson

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// endless reads as an endless run of 'x' without a newline (as /dev/zero
// has no newline), counting what it is asked for.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.read += int64(len(p))
	return len(p), nil
}

// wantTooLong checks that err is the *LineError of line n of a reader
// limited to limit bytes.
func wantTooLong(t *testing.T, err error, n int64, limit string) {
	t.Helper()
	var le *LineError
	if !errors.As(err, &le) || le.Line != n || le.Reason != "longer than "+limit {
		t.Fatalf("error %v, want line %d longer than %s", err, n, limit)
	}
}

func TestLineReaderMaxEndless(t *testing.T) {
	for _, limit := range []int{1000, 3<<20 + 5} {
		in := &endless{}
		lr := NewLineReaderMax(io.MultiReader(strings.NewReader("{}\n{\"a\":1}\r\n"), in), limit)
		for _, want := range []string{`{}`, `{"a":1}`} {
			if line, err := lr.Next(); err != nil || string(line) != want {
				t.Fatalf("Next = %q, %v; want %q", line, err, want)
			}
		}
		_, err := lr.Next()
		wantTooLong(t, err, 3, FormatSize(int64(limit)))
		if lr.Line() != 3 {
			t.Errorf("Line() = %d, want 3", lr.Line())
		}
		// It stopped reading within a buffer (1 MiB) past the limit and
		// never held more than the limit.
		if in.read > int64(limit)+2<<20 || lr.held() > limit+2 {
			t.Errorf("limit %d: read %d bytes, held %d", limit, in.read, lr.held())
		}
	}
}

func TestLineReaderMax(t *testing.T) {
	for _, limit := range []int{5, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3<<20 + 7} {
		x := strings.Repeat("x", limit)
		input := x + "\n" + // 1: exactly the limit
			x + "\r\n" + // 2: so is this one
			x + "y\n" + // 3: one byte over
			"\n" + // 4
			x + "\r\r\n" + // 5: a "\r" is content unless right before "\n"
			x + "yy\r\n" + // 6: too long
			"{}\r\n" + // 7
			x + "y" // 8: too long, at the end of input without "\n"
		lr := NewLineReaderMax(strings.NewReader(input), limit)
		for n, want := range []string{x, x, "", "", "", "", "{}", ""} {
			line, err := lr.Next()
			switch n + 1 {
			case 3, 5, 6, 8:
				wantTooLong(t, err, int64(n+1), FormatSize(int64(limit)))
				continue
			}
			if err != nil || string(line) != want || lr.Line() != int64(n+1) {
				t.Fatalf("limit %d: line %d: %.20q…, %v (Line() %d); want %.20q…", limit, n+1, line, err, lr.Line(), want)
			}
		}
		if line, err := lr.Next(); err != io.EOF || len(line) != 0 || lr.Line() != 8 {
			t.Fatalf("limit %d: after the last line: %q, %v, Line() %d", limit, line, err, lr.Line())
		}
		if cap(lr.long) > limit+2 {
			t.Errorf("limit %d: held %d bytes", limit, cap(lr.long))
		}
	}
}

// A long line is read into the buffer of the longest line so far, or put
// together once from chunks in a buffer of its size, which the next long
// lines reuse; Reset lets it go. Growing one buffer with append allocated
// about five times the line at every long line (a load of four gzip files
// of 190 MB lines peaked at 1.8 GB).
func TestLongLineBufferReused(t *testing.T) {
	const size = 24 << 20
	long := strings.Repeat("x", size)
	lr := NewLineReader(strings.NewReader("a\n" + long + "\nb\n" + long[1:] + "\nc"))
	next := func(want string) uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		line, err := lr.Next()
		runtime.ReadMemStats(&after)
		if (err != nil && err != io.EOF) || string(line) != want {
			t.Fatalf("line %d: %.20q…, %v", lr.Line(), line, err)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	next("a")
	// Its chunks and the line itself, nothing more.
	if n := next(long); n > 2*size+1<<20 {
		t.Errorf("the first long line allocated %d MiB, want at most %d", n>>20, (2*size+1<<20)>>20)
	}
	next("b")
	if n := next(long[1:]); n > 1<<20 {
		t.Errorf("the second long line allocated %d MiB: its buffer is not reused", n>>20)
	}
	next("c")
	if lr.held() > size+1+keepBytes {
		t.Errorf("the reader holds %d MiB, want the longest line once", lr.held()>>20)
	}
	lr.Reset(strings.NewReader("d"))
	if lr.held() > keepBytes {
		t.Errorf("after Reset the reader holds %d MiB", lr.held()>>20)
	}
}

func TestLineReaderNoLimit(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	lr := NewLineReader(strings.NewReader("a\r\n" + long + "\nb"))
	for n, want := range []string{"a", long, "b"} {
		line, err := lr.Next()
		if string(line) != want || lr.Line() != int64(n+1) || (err != nil && !(n == 2 && err == io.EOF)) {
			t.Fatalf("line %d: %.20q…, %v", n+1, line, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 1: "1 byte", 1000: "1000 bytes", 1024: "1 KiB", 1536: "1536 bytes",
		256 << 20: "256 MiB", 1536 << 20: "1536 MiB", 1 << 30: "1 GiB", 3 << 40: "3 TiB", 5 << 50: "5120 TiB",
		256<<20 + 1: "268435457 bytes",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
