package ndjson

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// LineReader reads lines of any length (no bufio.Scanner limit), or up to
// a maximum length, counting them from 1.
type LineReader struct {
	in   *bufio.Reader
	long []byte
	n    int64
	max  int  // the longest line Next returns (0: no limit)
	rest bool // the rest of a line too long to return is still to be read
}

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
	if cap(l.long) > 4<<20 {
		l.long = nil // do not keep a long line's memory for the next source
	}
}

// Next returns the next line without its "\n" (and a "\r" before it). The
// slice is valid until the next call. At the end of input it returns
// io.EOF, with the last line when the input does not end in "\n".
func (l *LineReader) Next() ([]byte, error) {
	if l.rest {
		if err := l.skipRest(); err != nil {
			return nil, err
		}
	}
	line, err := l.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		if l.tooLong(0, line) {
			return nil, l.errTooLong(err)
		}
		l.long = l.keep(l.long[:0], line)
		for err == bufio.ErrBufferFull {
			line, err = l.in.ReadSlice('\n')
			if l.tooLong(len(l.long), line) {
				return nil, l.errTooLong(err)
			}
			l.long = l.keep(l.long, line)
		}
		line = l.long
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
// l.long at max+2 bytes.
func (l *LineReader) tooLong(have int, chunk []byte) bool {
	return l.max > 0 && have+len(chunk) > l.max+2
}

// keep appends chunk to long, with a limit never growing it past the
// limit's max+2 bytes (append's own growth would overshoot by up to a
// quarter on a 256 MiB line).
func (l *LineReader) keep(long, chunk []byte) []byte {
	if need := len(long) + len(chunk); l.max > 0 && need > cap(long) {
		long = append(make([]byte, 0, min(max(2*cap(long), need), l.max+2)), long...)
	}
	return append(long, chunk...)
}

// errTooLong counts the line that is too long and returns its error; err
// is what reading its last chunk returned.
func (l *LineReader) errTooLong(err error) error {
	if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
		return err
	}
	l.n++
	l.long = l.long[:0]
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
