package export

import (
	"bytes"
	"io"
	"sync"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
)

// output is the files of one type (or of its deletions) in the export
// folder. Several connections write to it at once, a batch of whole lines
// at a time; with a split size it starts a new numbered file at a line
// boundary when the current one would grow past it. A file is made at its
// first line: a type without any gets none.
type output struct {
	folder    sink.Folder
	file      bulkdata.Name // its files' name, but for the part's number
	splitSize int64         // uncompressed bytes per file; 0: one file

	mu      sync.Mutex
	cur     sink.Destination
	curSize int64
	curRows int64
	files   []bulkdata.File
	pending int // tasks still to write to it
	err     error
}

func (o *output) name(i int) string {
	n := o.file
	n.Part = i
	return n.String()
}

// write adds a batch of whole lines ("\n"-terminated).
func (o *output) write(batch []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	for len(batch) > 0 {
		part := batch
		if o.splitSize > 0 && o.curSize+int64(len(part)) > o.splitSize {
			// As many whole lines as still fit; none: a new file. A line
			// longer than the split size goes whole into a file of its own.
			room := max(o.splitSize-o.curSize, 0)
			cut := bytes.LastIndexByte(part[:min(room, int64(len(part)))], '\n') + 1
			if cut == 0 && o.curSize > 0 {
				if o.err = o.rotate(); o.err != nil {
					return o.err
				}
				continue
			}
			if cut == 0 {
				cut = bytes.IndexByte(part, '\n') + 1
			}
			if cut > 0 {
				part = part[:cut]
			}
		}
		if o.cur == nil {
			if o.err = o.open(); o.err != nil {
				return o.err
			}
		}
		if _, o.err = o.cur.Write(part); o.err != nil {
			return o.err
		}
		o.curSize += int64(len(part))
		o.curRows += int64(bytes.Count(part, []byte{'\n'}))
		batch = batch[len(part):]
	}
	return nil
}

func (o *output) open() error {
	s, err := o.folder.Create(o.name(len(o.files)), o.file.Gzip)
	if err != nil {
		return err
	}
	o.cur, o.curSize, o.curRows = s, 0, 0
	return nil
}

// rotate commits the current file and records it.
func (o *output) rotate() error {
	if o.cur == nil {
		return nil
	}
	if err := o.cur.Commit(); err != nil {
		return err
	}
	n := o.curRows
	o.files = append(o.files, bulkdata.File{Type: o.file.ResourceType(), URL: o.name(len(o.files)), Count: &n})
	o.cur, o.curSize, o.curRows = nil, 0, 0
	return nil
}

// taskDone counts a finished task; after the last one the file is
// committed, so that few files are open at once.
func (o *output) taskDone() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending--; o.pending > 0 || o.err != nil {
		return o.err
	}
	o.err = o.rotate()
	return o.err
}

// abort discards a file being written.
func (o *output) abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur != nil {
		o.cur.Abort()
		o.cur = nil
	}
}

// batch gathers a task's lines (dump writes one per call) and hands them
// to where they go in batches: one lock per 256 KiB, not per line.
type batch struct {
	out interface{ write([]byte) error }
	buf []byte
}

const batchSize = 256 << 10

func (b *batch) Write(line []byte) (int, error) {
	b.buf = append(b.buf, line...)
	if len(b.buf) >= batchSize {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	return len(line), nil
}

func (b *batch) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	err := b.out.write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// lockedWriter is one stream that several tasks write batches to.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) write(p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(p)
	return err
}
