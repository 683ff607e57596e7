package ndjson

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// LineReader reads lines of any length (no bufio.Scanner limit), or up to
// a maximum length, counting them from 1.
//
// A line that fits its 1 MiB buffer is returned in place. A longer one is
// read in chunks of that size (reused from one long line to the next, up
// to keepBytes of them) and put together in a buffer of its exact length:
// growing one buffer as the line comes allocated about five times the
// line (append grows a large slice by a quarter at a time, and every step
// copies), all of it garbage the heap had to make room for. What a long
// line holds beyond keepBytes is let go at the next call of Next, so a
// source of a few 200 MB lines between small ones does not keep 200 MB
// for the rest of its lines.
type LineReader struct {
	in    *bufio.Reader
	parts [][]byte // the chunks of the long line being read
	spare [][]byte // chunks kept for the next long line
	long  []byte   // the last long line, put together
	n     int64
	max   int  // the longest line Next returns (0: no limit)
	rest  bool // the rest of a line too long to return is still to be read
}

// keepBytes is how much memory of long lines a LineReader keeps for the
// next ones (chunks, and the buffer of one line): more is let go.
const keepBytes = 4 << 20

// NewLineReader reads r through a 1 MiB buffer, with no limit on the length
// of a line.
func NewLineReader(r io.Reader) *LineReader {
	return NewLineReaderMax(r, 0)
}

// NewLineReaderMax is NewLineReader with lines limited to limit bytes
// (without their "\n" or "\r\n"; 0: no limit). For a longer line, Next
// returns a *LineError with its number that says "longer than <limit>
// (--max-line-size)", having held at most limit+2 bytes of it (besides the
// 1 MiB buffer): it stops reading the line there, so an input without a
// newline (/dev/zero) cannot use up memory. Calling Next again reads on
// from the line after it, skipping the rest without keeping it.
func NewLineReaderMax(r io.Reader, limit int) *LineReader {
	return &LineReader{in: bufio.NewReaderSize(r, 1<<20), max: limit}
}

// Reset makes l read r from its first line, keeping its buffer (and its
// limit): a loader of many small sources allocates it once.
func (l *LineReader) Reset(r io.Reader) {
	l.in.Reset(r)
	l.n, l.rest = 0, false
	l.letGo()
}

// Next returns the next line without its "\n" (and a "\r" before it). The
// slice is valid until the next call, and the caller may change its bytes
// (an in-place edit that does not grow it: nothing reads them again). At
// the end of input it returns io.EOF, with the last line when the input
// does not end in "\n".
func (l *LineReader) Next() ([]byte, error) {
	l.letGo()
	if l.rest {
		if err := l.skipRest(); err != nil {
			return nil, err
		}
	}
	line, err := l.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		size := 0
		for err == bufio.ErrBufferFull {
			if l.tooLong(size, line) {
				return nil, l.errTooLong(err)
			}
			l.keep(line)
			size += len(line)
			line, err = l.in.ReadSlice('\n')
		}
		if l.tooLong(size, line) {
			return nil, l.errTooLong(err)
		}
		line = l.assemble(size, line)
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
		return nil, &LineError{Line: l.n, Reason: l.reason()}
	}
	return line, err
}

// tooLong reports whether a line of which have bytes are read, and then
// chunk, is longer than the limit whatever follows: besides its content
// the line holds at most "\r\n". Checked before chunk is kept, this bounds
// what a line holds at max+2 bytes.
func (l *LineReader) tooLong(have int, chunk []byte) bool {
	return l.max > 0 && have+len(chunk) > l.max+2
}

// keep copies a full buffer of a long line into a chunk.
func (l *LineReader) keep(b []byte) {
	var c []byte
	if n := len(l.spare); n > 0 {
		c, l.spare = l.spare[n-1], l.spare[:n-1]
	} else {
		c = make([]byte, 0, l.in.Size())
	}
	l.parts = append(l.parts, append(c[:0], b...))
}

// assemble puts the long line together: its chunks (size bytes) and last,
// the end of it still in the buffer. Its chunks go back to spare.
func (l *LineReader) assemble(size int, last []byte) []byte {
	n := size + len(last)
	if cap(l.long) < n {
		l.long = make([]byte, 0, n)
	}
	b := l.long[:0]
	for _, c := range l.parts {
		b = append(b, c...)
	}
	l.long = append(b, last...)
	l.dropParts()
	return l.long
}

// dropParts gives the chunks of a line back to spare, as many as may be
// kept.
func (l *LineReader) dropParts() {
	for i, c := range l.parts {
		if (len(l.spare)+1)*l.in.Size() <= keepBytes {
			l.spare = append(l.spare, c)
		}
		l.parts[i] = nil
	}
	l.parts = l.parts[:0]
}

// letGo drops the last long line's buffer when it is larger than may be
// kept: it was valid only until this call.
func (l *LineReader) letGo() {
	if cap(l.long) > keepBytes {
		l.long = nil
	}
}

// errTooLong counts the line that is too long and returns its error; err
// is what reading its last chunk returned.
func (l *LineReader) errTooLong(err error) error {
	l.dropParts()
	if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
		return err
	}
	l.n++
	l.rest = err == bufio.ErrBufferFull // its "\n" is not read yet
	return &LineError{Line: l.n, Reason: l.reason()}
}

func (l *LineReader) reason() string {
	return "longer than " + FormatSize(int64(l.max)) + " (--max-line-size)"
}

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
}

func (e *LineError) Error() string { return "line " + strconv.FormatInt(e.Line, 10) + ": " + e.Reason }

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
