package ndjson

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readLines returns the non-blank lines of the ndjson files matching
// pattern (gzip when the name ends in .gz); b.Skip when there are none.
func readLines(b *testing.B, pattern string) (lines [][]byte, size int64) {
	b.Helper()
	files, _ := filepath.Glob(pattern)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				b.Fatal(err)
			}
		}
		for line := range bytes.Lines(data) {
			line = bytes.TrimSuffix(line, []byte("\n"))
			if len(line) > 0 {
				lines = append(lines, line)
				size += int64(len(line))
			}
		}
	}
	if len(lines) == 0 {
		b.Skipf("no data at %s", pattern)
	}
	return lines, size
}

// Real FHIR lines: the repository's samples, and the shared data sets when
// they sit beside the repository (../shared/data, see DESIGN.md).
var benchSets = []struct{ name, pattern string }{
	{"sample", "../../testdata/sample/*.ndjson"},
	{"synthea", "../../../shared/data/synthea/all.ndjson.gz"},
	{"synthea-hiv-Observation", "../../../shared/data/synthea-hiv/Observation.ndjson.gz"},
	{"r4-examples", "../../../shared/data/fhir-examples/examples.ndjson.gz"},
}

// BenchmarkCompactObjectLines compacts real lines with the keys the load
// stager asks for: one op is one pass over the whole set.
func BenchmarkCompactObjectLines(b *testing.B) {
	for _, set := range benchSets {
		b.Run(set.name, func(b *testing.B) {
			lines, size := readLines(b, set.pattern)
			keys := []string{"id", "resourceType", "meta"}
			spans := make([]Span, len(keys))
			var dst []byte
			b.SetBytes(size)
			for b.Loop() {
				for _, line := range lines {
					var err error
					if dst, err = CompactObject(dst[:0], line, keys, spans); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	// The rare case: every line's resourceType key spelled with an escape.
	b.Run("sample-escaped-key", func(b *testing.B) {
		lines, size := readLines(b, benchSets[0].pattern)
		for i, l := range lines {
			lines[i] = bytes.Replace(l, []byte(`"resourceType":`), []byte(`"resourceT\u0079pe":`), 1)
			size += int64(len(lines[i]) - len(l))
		}
		keys := []string{"id", "resourceType", "meta"}
		spans := make([]Span, len(keys))
		var dst []byte
		b.SetBytes(size)
		for b.Loop() {
			for _, line := range lines {
				var err error
				if dst, err = CompactObject(dst[:0], line, keys, spans); err != nil || !spans[1].Found() {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkAppendStripNulls strips real lines (almost none has a null: the
// fast path), the same lines with null members put in at three depths,
// and lines nested n levels deep.
func BenchmarkAppendStripNulls(b *testing.B) {
	run := func(b *testing.B, lines [][]byte) {
		var size int64
		for _, l := range lines {
			size += int64(len(l))
		}
		var dst []byte
		b.SetBytes(size)
		for b.Loop() {
			for _, line := range lines {
				var err error
				if dst, err = AppendStripNulls(dst[:0], line); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for _, set := range benchSets[:2] {
		b.Run(set.name, func(b *testing.B) {
			lines, _ := readLines(b, set.pattern)
			run(b, lines)
		})
		b.Run(set.name+"-nulls", func(b *testing.B) {
			lines, _ := readLines(b, set.pattern)
			for i, l := range lines {
				l = bytes.Replace(l, []byte(`{"`), []byte(`{"x":null,"`), 3)
				lines[i] = append(l[:len(l)-1:len(l)-1], `,"z":null}`...)
			}
			run(b, lines)
		})
	}
	for _, depth := range []int{100, 1000, 5000} {
		b.Run("nested-"+strconv.Itoa(depth), func(b *testing.B) {
			line, _ := nestedNulls(depth)
			run(b, [][]byte{line})
		})
	}
}

// nestedNulls returns a compact line of depth levels of
// {"a":[{"b":null,"c":…}]} and what AppendStripNulls makes of it.
func nestedNulls(depth int) (line, stripped []byte) {
	const open, openStripped, closing = `{"a":[{"b":null,"c":`, `{"a":[{"c":`, `}]}`
	line = make([]byte, 0, depth*(len(open)+len(closing))+1)
	stripped = make([]byte, 0, depth*(len(openStripped)+len(closing))+1)
	for range depth {
		line = append(line, open...)
		stripped = append(stripped, openStripped...)
	}
	line = append(line, '1')
	stripped = append(stripped, '1')
	for range depth {
		line = append(line, closing...)
		stripped = append(stripped, closing...)
	}
	return line, stripped
}

// BenchmarkCompactJSONBLines compacts the same lines as PostgreSQL prints
// them from jsonb (dump's input), with CompactJSONB and, for comparison,
// with the general CompactObject.
func BenchmarkCompactJSONBLines(b *testing.B) {
	for _, set := range benchSets {
		for _, f := range []struct {
			name    string
			compact func(dst, src []byte, keys []string, spans []Span) ([]byte, error)
		}{{"CompactJSONB", CompactJSONB}, {"CompactObject", CompactObject}} {
			b.Run(set.name+"/"+f.name, func(b *testing.B) {
				lines, size := readLines(b, set.pattern)
				for i, l := range lines {
					c, err := CompactObject(nil, l, nil, nil)
					if err != nil {
						b.Fatal(err)
					}
					lines[i] = jsonbText(c)
				}
				spans := make([]Span, len(jsonbKeys))
				var dst []byte
				b.SetBytes(size)
				for b.Loop() {
					for _, line := range lines {
						var err error
						if dst, err = f.compact(dst[:0], line, jsonbKeys, spans); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
