package ndjson

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
	"strconv"
)

// LineReader reads lines of any length (no bufio.Scanner limit), or up to
// a maximum length, counting them from 1.
//
// A line that fits its 1 MiB buffer is returned in place. A longer one is
// read into the buffer of the longest line so far, which is reused; what
// does not fit goes into 1 MiB chunks, and the line is then put together
// once in a buffer of its exact size, the next long line's. Growing one
// buffer with append as the line came allocated about five times the line
// (a large slice grows by a quarter at a time, copied at every step), all
// of it garbage that the heap grew to make room for. So a reader holds its
// longest line once, and twice while it reads a longer one; Reset lets go
// of it (see collectBytes).
type LineReader struct {
	in    *bufio.Reader
	long  []byte   // the longest line so far (its buffer), reused
	parts [][]byte // the chunks of a line longer than long's buffer
	spare [][]byte // chunks kept for the next such line
	n     int64
	max   int  // the longest line Next returns (0: no limit)
	rest  bool // the rest of a line too long to return is still to be read
}

// keepBytes is how much memory of long lines Reset keeps for the next
// source, and how many chunks are kept between long lines.
const keepBytes = 4 << 20

// collectBytes is how much memory let go makes the reader run the garbage
// collector. Its pacer lets the heap grow to twice what was live at the
// last collection, and that was the long line and its chunks: four gzip
// sources of 190 MB lines peaked at 805 MB, and at 411 MB with a
// collection when the chunks and the line are let go. The big buffers hold
// no pointers, so a collection costs what the small rest of the heap does.
const collectBytes = 64 << 20

// NewLineReader reads r through a 1 MiB buffer, with no limit on the length
// of a line.
func NewLineReader(r io.Reader) *LineReader {
	return NewLineReaderMax(r, 0)
}

// NewLineReaderMax is NewLineReader with lines limited to limit bytes
// (without their "\n" or "\r\n"; 0: no limit). For a longer line, Next
// returns a *LineError with its number that says "longer than <limit>"
// (its Err a *TooLongError), having held at most limit+2 bytes of it (besides the
// 1 MiB buffer): it stops reading the line there, so an input without a
// newline (/dev/zero) cannot use up memory. Calling Next again reads on
// from the line after it, skipping the rest without keeping it.
func NewLineReaderMax(r io.Reader, limit int) *LineReader {
	return &LineReader{in: bufio.NewReaderSize(r, 1<<20), max: limit}
}

// Reset makes l read r from its first line, keeping its buffer (and its
// limit): a loader of many small sources allocates it once. A long line's
// buffer is let go.
func (l *LineReader) Reset(r io.Reader) {
	l.in.Reset(r)
	l.n, l.rest = 0, false
	if n := cap(l.long); n > keepBytes {
		l.long = nil
		if n >= collectBytes {
			runtime.GC()
		}
	}
}

// Next returns the next line without its "\n" (and a "\r" before it). The
// slice is valid until the next call, and the caller may change its bytes
// (an edit in place that does not grow it: nothing reads them again). At
// the end of input it returns io.EOF, with the last line when the input
// does not end in "\n".
func (l *LineReader) Next() ([]byte, error) {
	if l.rest {
		if err := l.skipRest(); err != nil {
			return nil, err
		}
	}
	line, err := l.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		b, have := l.long[:0], 0
		for err == bufio.ErrBufferFull {
			if l.tooLong(have, line) {
				return nil, l.errTooLong(err)
			}
			b = l.keep(b, line)
			have += len(line)
			line, err = l.in.ReadSlice('\n')
		}
		if l.tooLong(have, line) {
			return nil, l.errTooLong(err)
		}
		line = l.assemble(b, have+len(line), line)
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(line) > 0 || err == nil {
		l.n++
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if l.max > 0 && len(line) > l.max {
		return nil, l.lineTooLong()
	}
	return line, err
}

// tooLong reports whether a line of which have bytes are read, and then
// chunk, is longer than the limit whatever follows: besides its content
// the line holds at most "\r\n". Checked before chunk is kept, this bounds
// what is held of the line at max+2 bytes.
func (l *LineReader) tooLong(have int, chunk []byte) bool {
	return l.max > 0 && have+len(chunk) > l.max+2
}

// keep appends a full buffer of a long line to b, the line so far in
// long's buffer, while it has room; after that, to a chunk.
func (l *LineReader) keep(b, chunk []byte) []byte {
	if len(l.parts) == 0 && len(b)+len(chunk) <= cap(b) {
		return append(b, chunk...)
	}
	var c []byte
	if n := len(l.spare); n > 0 {
		c, l.spare = l.spare[n-1], l.spare[:n-1]
	} else {
		c = make([]byte, 0, l.in.Size())
	}
	l.parts = append(l.parts, append(c[:0], chunk...))
	return b
}

// assemble ends a long line of n bytes: b (in long's buffer), its chunks,
// and last, the end of it still in the reader's buffer. When there are
// chunks, the line is put together in a new buffer of its size, which
// becomes long's.
func (l *LineReader) assemble(b []byte, n int, last []byte) []byte {
	if len(l.parts) > 0 || len(b)+len(last) > cap(b) {
		whole := make([]byte, 0, n)
		whole = append(whole, b...)
		for _, c := range l.parts {
			whole = append(whole, c...)
		}
		b = whole
		if l.dropParts() >= collectBytes {
			runtime.GC()
		}
	}
	l.long = append(b, last...)
	return l.long
}

// dropParts gives the chunks of a line back to spare, as many as are kept,
// and returns how many bytes of them it let go.
func (l *LineReader) dropParts() int {
	gone := 0
	for i, c := range l.parts {
		if (len(l.spare)+1)*cap(c) <= keepBytes {
			l.spare = append(l.spare, c)
		} else {
			gone += cap(c)
		}
		l.parts[i] = nil
	}
	l.parts = l.parts[:0]
	return gone
}

// errTooLong counts the line that is too long and returns its error; err
// is what reading its last chunk returned.
func (l *LineReader) errTooLong(err error) error {
	if l.dropParts() >= collectBytes {
		runtime.GC()
	}
	if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
		return err
	}
	l.n++
	l.rest = err == bufio.ErrBufferFull // its "\n" is not read yet
	return l.lineTooLong()
}

func (l *LineReader) lineTooLong() *LineError {
	tl := &TooLongError{Max: l.max}
	return &LineError{Line: l.n, Reason: tl.Error(), Err: tl}
}

// TooLongError is the fact behind the *LineError of a line longer than
// the reader's limit, Max bytes.
type TooLongError struct{ Max int }

func (e *TooLongError) Error() string { return "longer than " + FormatSize(int64(e.Max)) }

// skipRest reads up to the end of the line that was too long.
func (l *LineReader) skipRest() error {
	for {
		_, err := l.in.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		l.rest = false
		return err
	}
}

// held is the memory l keeps of long lines: chunks and the last line's
// buffer.
func (l *LineReader) held() int {
	n := cap(l.long)
	for _, c := range l.parts {
		n += cap(c)
	}
	for _, c := range l.spare {
		n += cap(c)
	}
	return n
}

// Line is the number of the line Next returned last.
func (l *LineReader) Line() int64 { return l.n }

// IsBlank reports whether a line holds only spaces, tabs and carriage returns.
func IsBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// LineError is bad input on one line.
type LineError struct {
	Line   int64
	Reason string
	Err    error // the fact Reason tells, when there is one (a *TooLongError)
}

func (e *LineError) Error() string { return "line " + strconv.FormatInt(e.Line, 10) + ": " + e.Reason }
func (e *LineError) Unwrap() error { return e.Err }

// FormatSize writes a number of bytes for people: in the largest of KiB,
// MiB, GiB and TiB that it is a whole number of ("256 MiB", "1536 KiB"),
// else in bytes ("1000 bytes").
func FormatSize(n int64) string {
	units := [...]string{"KiB", "MiB", "GiB", "TiB"}
	unit := ""
	v := n
	for _, u := range units {
		if v == 0 || v%1024 != 0 {
			break
		}
		v /= 1024
		unit = u
	}
	switch {
	case unit != "":
		return strconv.FormatInt(v, 10) + " " + unit
	case n == 1:
		return "1 byte"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}
