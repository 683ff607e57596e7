package fhirformat

import (
	"context"
	"io"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// Stream converts ndjson from r to w, one compact resource per line, and
// returns how many it wrote. Blank lines are skipped; a line that is not a
// JSON object, or longer than maxLine bytes (0: no bound), stops it with an
// *ndjson.LineError. Lines are checked for being in the format converted
// to already, until one shows the format converted from, or up to line
// checkLines: the first such line stops it with a *FormatError. w should
// be buffered.
func Stream(ctx context.Context, r io.Reader, w io.Writer, dir Direction, maxLine int, checkLines int64) (int64, error) {
	lines := ndjson.NewLineReaderMax(r, maxLine)
	c := New(dir)
	want, found := FHIR, Aidbox
	if dir == ToFHIR {
		want, found = Aidbox, FHIR
	}
	check := NewChecker(want)
	var compact, out []byte
	var n int64
	for {
		line, err := lines.Next()
		if err != nil && err != io.EOF {
			return n, err
		}
		if !ndjson.IsBlank(line) {
			if n&1023 == 0 && ctx.Err() != nil {
				return n, ctx.Err()
			}
			var cerr error
			compact, cerr = ndjson.CompactObject(compact[:0], line, nil, nil)
			if cerr == nil {
				// The scanner checks structure only; nothing after convert
				// would find a bad token before a reader trips on it.
				cerr = ndjson.Validate(line)
			}
			if cerr == nil && lines.Line() <= checkLines {
				path, _ := check.Misfit(compact, "")
				if path != "" {
					return n, &FormatError{Line: lines.Line(), Found: found, Path: path}
				}
				if check.Right() {
					checkLines = 0 // the format shown: no more checks
				}
			}
			if cerr == nil {
				out, cerr = c.Resource(out[:0], compact)
			}
			if cerr != nil {
				return n, &ndjson.LineError{Line: lines.Line(), Reason: ndjson.LineReason(cerr)}
			}
			out = append(out, '\n')
			if _, werr := w.Write(out); werr != nil {
				return n, werr
			}
			n++
		}
		if err == io.EOF {
			return n, nil
		}
	}
}
