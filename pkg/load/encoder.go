package load

import (
	"cmp"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"io"
	"slices"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// encoder turns a source's ndjson lines into the data of a binary COPY (it
// is the copyIn reader that pgconn's CopyFrom pulls): it reads the lines,
// checks and splices each with the byte scanner (lineParser), and encodes
// them as rows of the staging table (rtype, n, id, cts, txid, ts, resource)
// or, in direct mode, as rows in the final form of the type's table.
//
// A line of a type that has no staging partition yet ends the current COPY
// (the tuple is kept in pending); the caller creates the partition, calls
// admit and runs the next COPY, which starts with that tuple.
//
// A line is held once: it is compacted and made into the resource to store
// in the line reader's buffer, and a long resource goes to CopyFrom from
// there (tail) rather than through out. A 190 MB line was held four times
// (the line, its compact form, the resource, the COPY data), and those
// buffers were kept from source to source.
type encoder struct {
	lineParser
	in *ndjson.LineReader

	line     int64            // number of the last line read
	counts   map[string]int64 // lines encoded per type
	known    map[string]bool  // types with a partition
	order    []string         // types in order of first appearance
	newType  string           // a type waiting for its partition
	pending  []byte           // its tuple
	pendTail []byte           // its resource, when a tail (see tail)
	onLine   func(n int64)    // progress, called every 4096 lines (may be nil)
	direct   *direct          // final-form rows straight into the table (typed loads only)
	ids      idHashes         // to tell whether a type has repeated ids
	maxTxid  int64            // the largest txid a line set (--preserve-meta)
	// advance moves transaction_id_seq past a txid (it returns the
	// sequence's value then); advanced is how far it is known to be.
	// Called after each batch of lines, before they reach the server, so
	// that no txid drawn meanwhile equals one the lines preserve.
	advance  func(txid int64) (int64, error)
	advanced int64

	maxErrors int       // bad lines that may be skipped
	bad       []BadLine // those skipped

	// The COPY data (its tail: a long resource where parse built it); err
	// is why encoding stopped, when it did on bad input or a read error.
	copyIn
	eof bool // the input is exhausted
}

// keepScratch is the largest buffer an encoder keeps for the next source: one
// that a long line made is let go.
const keepScratch = 4 << 20

// reuse returns b emptied, or nil when it is larger than is kept.
func reuse(b []byte) []byte {
	if cap(b) > keepScratch {
		return nil
	}
	return b[:0]
}

// newEncoder makes the encoder of one source. prev, the encoder of the
// Loader's source before (or nil), lends it its buffers: a load of many
// small sources would otherwise allocate megabytes per source.
func newEncoder(r io.Reader, o Options, prev *encoder) *encoder {
	s := &encoder{
		counts:    map[string]int64{},
		known:     map[string]bool{},
		maxErrors: o.MaxErrors,
	}
	if prev != nil {
		prev.in.Reset(r)
		s.in = prev.in
		s.out, s.pending = reuse(prev.out), reuse(prev.pending)
		s.lineParser = prev.lineParser.reset(o)
	} else {
		s.in = ndjson.NewLineReaderMax(r, o.MaxLineSize)
		s.lineParser = lineParser{}.reset(o)
	}
	s.copyIn.fill = s.fillCopy
	s.ids.max = defaultMaxIDHashes
	return s
}

// release lets go of what long lines left in s's buffers, at the end of
// its source: the Loader keeps s to lend them to the next source.
func (s *encoder) release() {
	s.out, s.pending = reuse(s.out), reuse(s.pending)
	s.tail, s.pendTail, s.compact, s.fhirIn = nil, nil, nil, nil
	s.fhirOut, s.id, s.dec.Meta, s.dec.Res = reuse(s.fhirOut), reuse(s.id), reuse(s.dec.Meta), reuse(s.dec.Res)
	s.in.Reset(nil) // last: when it lets go of a long line, it collects
}

// result is what the encoder encoded, and skipped.
func (s *encoder) result() Result {
	// Lines the server refused were found after the others: in order.
	slices.SortFunc(s.bad, func(a, b BadLine) int { return cmp.Compare(a.Line, b.Line) })
	return Result{Counts: Counts(s.counts), Skipped: s.bad}
}

// skip records the current line as bad and goes on, or, past the limit of
// bad lines, fails with its error.
func (s *encoder) skip(reason, id, typ string) error {
	reason = ndjson.ClipQuoted(reason) // it may quote the line: a name, not a copy
	if len(id) > MaxIDBytes {
		id = ndjson.Clip(id)
	}
	if len(s.bad) >= s.maxErrors {
		if s.maxErrors > 0 {
			reason += " (" + s.say(&TooManyBadLinesError{Max: s.maxErrors}) + ")"
		}
		return &ndjson.LineError{Line: s.line, Reason: reason}
	}
	s.bad = append(s.bad, BadLine{Line: s.line, ID: id, Type: typ, Reason: reason})
	return nil
}

// admit records that type t now has a partition and starts the next COPY's
// data: a header, then the tuple that was waiting.
func (s *encoder) admit(t string) {
	s.known[t] = true
	s.newType = ""
	s.start()
	s.out = append(s.out, s.pending...)
	s.tail, s.pendTail = s.pendTail, nil
	s.pending = s.pending[:0]
}

// fillCopy encodes lines into s.out until it holds at least want bytes, the
// input ends, or a line needs a new partition or leaves a tail; then,
// before those lines go anywhere, it moves transaction_id_seq past the
// txids they preserve.
func (s *encoder) fillCopy(want int) error {
	if err := s.encodeLines(want); err != nil {
		return err
	}
	return s.advanceTxids()
}

// advanceTxids moves transaction_id_seq past the largest txid the lines
// read so far preserve (--preserve-meta), when it is not known to be
// there: one round trip per batch of lines that raises it.
func (s *encoder) advanceTxids() error {
	if s.advance == nil || s.maxTxid <= s.advanced {
		return nil
	}
	v, err := s.advance(s.maxTxid)
	if err != nil {
		return err
	}
	s.advanced = max(v, s.maxTxid)
	return nil
}

func (s *encoder) encodeLines(want int) error {
	for len(s.out) < want {
		if s.eof {
			s.end()
			return nil
		}
		// The last line's bytes go now: a long line's buffer is not kept
		// alive beside the next one.
		s.compact, s.fhirIn = nil, nil
		line, err := s.in.Next()
		var tooLong *ndjson.LineError
		switch {
		case err == io.EOF:
			s.eof = true
		case errors.As(err, &tooLong):
			s.line = tooLong.Line
			if err := s.skip(s.say(tooLong.Err), "", ""); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		s.line = s.in.Line()
		if s.onLine != nil && s.line&4095 == 0 {
			s.onLine(s.line)
		}
		if ndjson.IsBlank(line) {
			continue
		}
		t, err := s.encodeLine(line)
		var other notTheLine
		if errors.As(err, &other) {
			return other.err
		}
		var wrong *fhirformat.FormatError
		if errors.As(err, &wrong) {
			return wrong // the whole source, not a bad line
		}
		if err != nil {
			if err := s.skip(s.say(err), s.badID, s.badType); err != nil {
				return err
			}
			continue
		}
		if t != "" { // a new type: end this COPY, its tuple waits in pending
			s.newType = t
			s.end()
			return nil
		}
		if len(s.tail) > 0 {
			return nil // the tail goes first: the next line overwrites it
		}
	}
	return nil
}

// encodeLine checks one line and appends its tuple to s.out, or to s.pending
// when its type is new (then it returns that type).
func (s *encoder) encodeLine(line []byte) (string, error) {
	r, err := s.parse(line, s.line)
	if err != nil {
		return "", err
	}
	if s.direct == nil { // a direct COPY finds repeated ids itself
		s.ids.add(r.typ, r.id)
	}
	if s.counts[r.typ] == 0 {
		s.order = append(s.order, r.typ)
	}
	s.counts[r.typ]++
	s.maxTxid = max(s.maxTxid, r.meta.Txid)
	switch {
	case s.direct != nil:
		if s.out, s.tail, err = s.direct.appendRow(s.out, r); err != nil {
			return "", notTheLine{err}
		}
	case !s.known[r.typ]:
		s.pending, s.pendTail = appendStageRow(s.pending[:0], r, s.line)
		return r.typ, nil
	default:
		s.out, s.tail = appendStageRow(s.out, r, s.line)
	}
	return "", nil
}

// appendStageRow appends r as a tuple of the staging table:
// (rtype, n, id, cts, txid, ts, resource), the resource's bytes but for a
// tail (see appendResource).
func appendStageRow(b []byte, r resource, line int64) (out, tail []byte) {
	b = pg.AppendTuple(b, 7)
	b = pg.AppendBytes(b, []byte(r.typ))
	b = pg.AppendInt8(b, line)
	b = pg.AppendBytes(b, r.id)
	b = appendTimeOrNull(b, r.meta.CTS)
	if r.meta.Txid > 0 {
		b = pg.AppendInt8(b, r.meta.Txid)
	} else {
		b = pg.AppendNull(b)
	}
	b = appendTimeOrNull(b, r.meta.TS)
	return appendResource(b, r.body, false)
}

// tailMin is the length from which a resource is handed to CopyFrom where
// it lies (copyIn.tail) instead of copied into the COPY data.
const tailMin = 64 << 10

// appendResource appends the field of the resource body: text, or jsonb
// (version 1, as pg.AppendJSONB). A body of tailMin bytes or more is not
// appended but returned as tail, to follow the field's length.
func appendResource(b, body []byte, jsonb bool) (out, tail []byte) {
	if len(body) < tailMin {
		if jsonb {
			return pg.AppendJSONB(b, body), nil
		}
		return pg.AppendBytes(b, body), nil
	}
	if jsonb {
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)+1))
		return append(b, 1), body
	}
	return binary.BigEndian.AppendUint32(b, uint32(len(body))), body
}

func appendTimeOrNull(b []byte, t *time.Time) []byte {
	if t == nil {
		return pg.AppendNull(b)
	}
	return pg.AppendTime(b, *t)
}

// idHashes keeps 64-bit hashes of the ids of each type, to tell for sure
// that a type has no repeated id (so the upsert can skip deduplication).
// Its memory is capped: past max ids it stops and answers "maybe".
type idHashes struct {
	max      int // the most ids it keeps
	seed     maphash.Seed
	byType   map[string][]uint64
	n        int
	overflow bool
}

// defaultMaxIDHashes is idHashes.max unless the Loader says otherwise: 16
// MiB of hashes (twice that while a slice grows).
const defaultMaxIDHashes = 2 << 20

func (h *idHashes) add(t string, id []byte) {
	if h.overflow {
		return
	}
	if h.byType == nil {
		h.seed = maphash.MakeSeed()
		h.byType = map[string][]uint64{}
	}
	if h.n++; h.n > h.max {
		h.overflow, h.byType = true, nil
		return
	}
	h.byType[t] = append(h.byType[t], maphash.Bytes(h.seed, id))
}

// unique reports whether type t certainly has no repeated id. A hash
// collision only makes it answer false, never true wrongly.
func (h *idHashes) unique(t string) bool {
	if h.overflow {
		return false
	}
	hs := h.byType[t]
	slices.Sort(hs)
	for i := 1; i < len(hs); i++ {
		if hs[i] == hs[i-1] {
			return false
		}
	}
	return true
}
