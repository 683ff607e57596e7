package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// tuples runs an encoder over input until the input ends, admitting every new
// type at once, and returns the staged tuples as "type|line|id|cts|resource".
func tuples(t *testing.T, input, typ string, merge *Merge, strip bool) ([]string, *encoder, error) {
	t.Helper()
	enc := newEncoder(strings.NewReader(input), Options{Type: typ, Merge: merge, StripNulls: strip}, nil)
	data, err := copyAll(enc, typ, nil)
	if err != nil {
		return nil, enc, err
	}
	return decodeTuples(t, data), enc, nil
}

// copyAll reads the COPY data of enc (admitting every new type at once)
// into data, appending.
func copyAll(enc *encoder, typ string, data []byte) ([]byte, error) {
	if typ != "" {
		enc.admit(typ)
	}
	for {
		if len(data) == cap(data) {
			data = slices.Grow(data, 64<<10)
		}
		n, err := enc.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		switch {
		case err == io.EOF && enc.newType != "":
			enc.admit(enc.newType)
		case err == io.EOF:
			return data, nil
		case err != nil:
			return data, err
		}
	}
}

// decodeTuples decodes the staging table's binary COPY data (one COPY after
// another) with pg.BinaryRows, as tuples() gives them: the times as "cts"
// and "ts".
func decodeTuples(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	row := func(f [][]byte) error {
		if len(f) != 7 {
			return fmt.Errorf("a tuple of %d fields", len(f))
		}
		s := make([]string, len(f))
		for i, v := range f {
			switch {
			case v == nil:
				s[i] = "NULL"
			case i == 1 || i == 4: // n, txid
				n, err := pg.Int8(v)
				if err != nil {
					return err
				}
				s[i] = fmt.Sprint(n)
			case i == 3:
				s[i] = "cts"
			case i == 5:
				s[i] = "ts"
			default:
				s[i] = string(v)
			}
		}
		out = append(out, strings.Join(s, "|"))
		return nil
	}
	// Each COPY starts with the signature, which no line (UTF-8 text) holds.
	signature := []byte("PGCOPY\n\xff\r\n\x00")
	copies := bytes.Split(data, signature)
	if len(copies[0]) > 0 {
		t.Fatalf("COPY data before the first header: %.40q", copies[0])
	}
	for _, c := range copies[1:] {
		rows := &pg.BinaryRows{Row: row}
		_, err := rows.Write(append(slices.Clip(signature), c...))
		if err == nil {
			err = rows.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestEncoderSplices(t *testing.T) {
	input := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"x","profile":["p"]},"name":[{"given":["A"]}]}` + "\n" +
		"\n" +
		`  {"id" : "p\"2", "active": true}  ` + "\r\n" +
		`{"id":"p3","meta":{"versionId":"1","createdAt":"2020-01-01T00:00:00Z"}}` // no final newline
	got, enc, err := tuples(t, input, "Patient", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`Patient|1|p1|NULL|NULL|NULL|{"name":[{"given":["A"]}],"meta":{"profile":["p"]}}`,
		`Patient|3|p"2|NULL|NULL|NULL|{"active":true}`,
		`Patient|4|p3|cts|NULL|NULL|{}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tuples:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if enc.counts["Patient"] != 3 || enc.line != 4 {
		t.Errorf("counts %v, lines %d", enc.counts, enc.line)
	}
	if !enc.ids.unique("Patient") {
		t.Error("ids are unique")
	}
}

// A long line is held once, in the line reader's buffer: compacted and made
// into the resource there, and handed to the COPY from there. It was held
// four times (the line, its compact form, the resource, the COPY data),
// each grown by append: a load of four gzip files of 190 MB lines peaked at
// 1.8 GB.
func TestEncoderHoldsLongLineOnce(t *testing.T) {
	const size = 24 << 20
	data := strings.Repeat("x", size)
	input := `{"id":"a"}` + "\n" +
		`{"data": "` + data + `", "id": "big", "meta": {"versionId": "1", "tag": [{"code": "t"}]}, "b": null}` + "\n" +
		`{"id":"b"}` + "\n"
	enc := newEncoder(strings.NewReader(input), Options{Type: "P"}, nil)
	out := make([]byte, 0, size+1<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := copyAll(enc, "P", out)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// The line reader's chunks, and the line.
	if n := after.TotalAlloc - before.TotalAlloc; n > 2*size+4<<20 {
		t.Errorf("staging a line of %d MiB allocated %d MiB, want at most %d", size>>20, n>>20, (2*size+4<<20)>>20)
	}
	want := []string{
		`P|1|a|NULL|NULL|NULL|{}`,
		`P|2|big|NULL|NULL|NULL|{"data":"` + data + `","b":null,"meta":{"tag":[{"code":"t"}]}}`,
		`P|3|b|NULL|NULL|NULL|{}`,
	}
	if got := decodeTuples(t, out); !slices.Equal(got, want) {
		t.Errorf("got %d tuples %.300q, want %.300q", len(got), got, want)
	}
}

// The resource of a long line goes to the COPY after its tuple (encoder.tail),
// on every path: staged, a new type's first line, --merge longer than the
// line, --strip-nulls, and the direct COPY (as jsonb).
func TestEncoderLongResources(t *testing.T) {
	data := strings.Repeat("y", 2*tailMin)
	long := `{"resourceType":"A","id":"1","data":"` + data + `","n":null}`
	m, err := ParseMerge(`{"extra":"` + strings.Repeat("z", 3*tailMin) + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ string
		merge     *Merge
		strip     bool
		want      string
	}{
		{"staged", "A", nil, false, `{"data":"` + data + `","n":null}`},
		{"new type", "", nil, false, `{"data":"` + data + `","n":null}`},
		{"merge", "A", m, false, `{"data":"` + data + `","n":null,"extra":"` + strings.Repeat("z", 3*tailMin) + `"}`},
		{"strip", "A", nil, true, `{"data":"` + data + `"}`},
	} {
		got, _, err := tuples(t, `{"resourceType":"A","id":"0"}`+"\n"+long+"\n"+long+"\n", tc.typ, tc.merge, tc.strip)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, g := range got {
			want := "A|" + fmt.Sprint(i+1) + "|" + fmt.Sprint(min(i, 1)) + "|NULL|NULL|NULL|" + tc.want
			if i == 0 {
				want = "A|1|0|NULL|NULL|NULL|{}"
				if tc.merge != nil {
					want = `A|1|0|NULL|NULL|NULL|{"extra":"` + strings.Repeat("z", 3*tailMin) + `"}`
				}
			}
			if g != want {
				t.Errorf("%s: tuple %d: %.100q…, want %.100q…", tc.name, i+1, g, want)
			}
		}
		if len(got) != 3 {
			t.Errorf("%s: %d tuples", tc.name, len(got))
		}
	}
	// The direct COPY: the table's rows, the resource as jsonb.
	enc := newEncoder(strings.NewReader(long+"\n"+long+"\n"), Options{Type: "A"}, nil)
	txid := int64(0)
	enc.direct = &direct{now: time.Now(), txids: &txidBlocks{fetch: func(n int) ([]int64, error) {
		ids := make([]int64, n)
		for i := range ids {
			txid++
			ids[i] = txid
		}
		return ids, nil
	}}}
	out, err := io.ReadAll(enc)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"data":"` + data + `","n":null}`
	field := binary.BigEndian.AppendUint32(nil, uint32(len(body)+1))
	field = append(append(field, 1), body...)
	if n := bytes.Count(out, field); n != 2 || !bytes.HasSuffix(out, append(field, 0xff, 0xff)) {
		t.Errorf("the direct COPY holds the resource %d times, or not at its end", n)
	}
}

func TestEncoderRoutesTypes(t *testing.T) {
	input := `{"resourceType":"A","id":"1"}
{"resourceType":"B","id":"1"}
{"resourceType":"A","id":"2"}
{"resourceType":"A","id":"1"}
`
	got, enc, err := tuples(t, input, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ";") != `A|1|1|NULL|NULL|NULL|{};B|2|1|NULL|NULL|NULL|{};A|3|2|NULL|NULL|NULL|{};A|4|1|NULL|NULL|NULL|{}` {
		t.Errorf("tuples %q", got)
	}
	if strings.Join(enc.order, ",") != "A,B" || enc.counts["A"] != 3 || enc.counts["B"] != 1 {
		t.Errorf("order %v counts %v", enc.order, enc.counts)
	}
	if enc.ids.unique("A") || !enc.ids.unique("B") {
		t.Error("A repeats id 1, B does not")
	}
}

func TestEncoderMergeAndStrip(t *testing.T) {
	m, err := ParseMerge(`{"active": true, "meta": {"tag": [{"code": "x"}]}}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := tuples(t, `{"id":"1","active":false,"meta":{"source":"s"},"a":null,"b":{"c":null}}`+"\n", "P", m, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := `P|1|1|NULL|NULL|NULL|{"b":{},"meta":{"tag":[{"code":"x"}]},"active":true}`; len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEncoderBadLines(t *testing.T) {
	for input, want := range map[string]string{
		"{\"id\":\"1\"}\n[]\n":                        "line 2: not a JSON object",
		"{\"id\":1}\n":                                `line 1: no string "id"`,
		"{\"id\":\"1\",\"resourceType\":\"Q\"}\n":     `line 1: resourceType "Q" in a source of type P`, // cmd words it "is not --type P"
		"{\"id\":\"1\",\"resourceType\":3}\n":         `line 1: "resourceType" is not a string`,
		"{\"id\":\"1\",\"meta\":{\"createdAt\":1}}\n": `line 1: meta.createdAt 1 is not an RFC 3339 instant`,
		"{\"id\":\"1\",\"a\":\"\xff\"}\n":             "line 1: not valid UTF-8",
		"{\"id\":\"1\"} {}\n":                         "line 1: invalid JSON: text after the object",
	} {
		_, _, err := tuples(t, input, "P", nil, false)
		var le *ndjson.LineError
		if !errors.As(err, &le) || err.Error() != want {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
}

// Past its bound the id-hash set lets go of its hashes and can no longer
// tell that a type's ids are unique.
func TestIDHashesOverflow(t *testing.T) {
	h := idHashes{max: 3}
	for _, id := range []string{"a", "b", "c"} {
		h.add("P", []byte(id))
	}
	if !h.unique("P") || h.overflow {
		t.Fatal("3 unique ids under a bound of 3")
	}
	h.add("Q", []byte("a"))
	if !h.overflow || h.byType != nil || h.unique("P") || h.unique("Q") {
		t.Errorf("a 4th id: overflow %v, hashes %v kept, unique P %v, Q %v", h.overflow, h.byType != nil, h.unique("P"), h.unique("Q"))
	}
}
