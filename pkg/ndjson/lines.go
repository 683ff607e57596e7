package ndjson

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// LineReader reads lines of any length (no bufio.Scanner limit), counting
// them from 1.
type LineReader struct {
	in   *bufio.Reader
	long []byte
	n    int64
}

// NewLineReader reads r through a 1 MiB buffer.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{in: bufio.NewReaderSize(r, 1<<20)}
}

// Next returns the next line without its "\n" (and a "\r" before it). The
// slice is valid until the next call. At the end of input it returns
// io.EOF, with the last line when the input does not end in "\n".
func (l *LineReader) Next() ([]byte, error) {
	line, err := l.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		l.long = append(l.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = l.in.ReadSlice('\n')
			l.long = append(l.long, line...)
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
	return line, err
}

// Line is the number of the line Next returned last.
func (l *LineReader) Line() int64 { return l.n }

// IsBlank reports whether a line holds only spaces and tabs.
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
