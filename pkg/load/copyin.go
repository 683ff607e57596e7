package load

import (
	"errors"
	"io"
	"sync"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// copyIn is the io.Reader that pgconn's CopyFrom pulls the data of one
// binary COPY FROM STDIN from: the header, then what fill appends, then
// (once fill calls end) the trailer. What makes the rows is the fill
// function alone, as pgx's CopyFromSource is fed by its buildCopyBuf: the
// load's encoder and the deletions reader share this protocol.
//
// When the connection breaks, CopyFrom returns without waiting for its
// goroutine, which may be in a Read (of a slow source, say) and would go on
// using the source and the layout connection while the caller closes them.
// finish waits for a Read in flight to end (the caller first cancels the
// source's context so that it ends soon) and makes later Reads fail.
type copyIn struct {
	// fill appends COPY tuples to out until it holds at least want bytes
	// (or a tail), and calls end when the data is complete. An error ends
	// the COPY; it is kept in err.
	fill func(want int) error

	out []byte // COPY data not yet handed over, from pos
	pos int
	// tail is the resource of the last tuple in out, when it is long
	// (tailMin): handed to CopyFrom after out, from where it was built,
	// not copied. fill is not called again until it is all handed over.
	tail    []byte
	started bool  // this COPY's header is in out (or was handed over)
	ended   bool  // this COPY's trailer is in out (or was handed over)
	err     error // why fill stopped the COPY, when it did

	mu   sync.Mutex
	over bool // finish was called
}

var errCopyOver = errors.New("the COPY is over")

// Read implements io.Reader for CopyFrom.
func (c *copyIn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return 0, errCopyOver
	}
	if !c.started {
		c.start()
	}
	for c.pos == len(c.out) {
		if len(c.tail) > 0 {
			n := copy(p, c.tail)
			if c.tail = c.tail[n:]; len(c.tail) == 0 {
				c.tail = nil // not keeping the line alive
			}
			return n, nil
		}
		if c.ended {
			return 0, io.EOF
		}
		c.out, c.pos = c.out[:0], 0
		if err := c.fill(len(p)); err != nil {
			c.err = err
			return 0, err
		}
	}
	n := copy(p, c.out[c.pos:])
	c.pos += n
	return n, nil
}

// start empties out and begins a COPY's data with its header.
func (c *copyIn) start() {
	c.out, c.pos = pg.AppendCopyHeader(c.out[:0]), 0
	c.started, c.ended = true, false
}

// end appends the COPY's trailer: the data is complete.
func (c *copyIn) end() {
	c.out = pg.AppendCopyTrailer(c.out)
	c.ended = true
}

// finish waits for a Read in flight and makes every later Read fail.
func (c *copyIn) finish() {
	c.mu.Lock()
	c.over = true
	c.mu.Unlock()
}
