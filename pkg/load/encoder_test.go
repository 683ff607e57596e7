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
)

// tuples runs a encoder over input until the input ends, admitting every new
// type at once, and returns the staged tuples as "type|line|id|cts|resource".
func tuples(t *testing.T, input, typ string, merge *Merge, strip bool) ([]string, *encoder, error) {
	t.Helper()
	enc := newEncoder(strings.NewReader(input), Options{Type: typ, Merge: merge, StripNulls: strip}, nil)
	data, err := stageAll(enc, typ, nil)
	if err != nil {
		return nil, enc, err
	}
	return decodeTuples(data), enc, nil
}

// stageAll reads the COPY data of enc (admitting every new type at once)
// into data, appending.
func stageAll(enc *encoder, typ string, data []byte) ([]byte, error) {
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

// decodeTuples decodes the staging table's binary COPY data as tuples()
// gives them.
func decodeTuples(data []byte) []string {
	var out []string
	for len(data) > 0 {
		if bytes.HasPrefix(data, []byte("PGCOPY\n\xff\r\n\x00")) {
			data = data[19:]
			continue
		}
		n := int16(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n == -1 {
			continue
		}
		var fields []string
		for range n {
			l := int32(binary.BigEndian.Uint32(data))
			data = data[4:]
			if l < 0 {
				fields = append(fields, "NULL")
				continue
			}
			f := data[:l]
			data = data[l:]
			if len(f) == 8 && len(fields) == 1 {
				fields = append(fields, fmt.Sprint(binary.BigEndian.Uint64(f)))
				continue
			}
			if len(f) == 8 && len(fields) == 3 {
				fields = append(fields, "cts")
				continue
			}
			if len(f) == 8 && len(fields) == 4 {
				fields = append(fields, fmt.Sprint(binary.BigEndian.Uint64(f)))
				continue
			}
			if len(f) == 8 && len(fields) == 5 {
				fields = append(fields, "ts")
				continue
			}
			fields = append(fields, string(f))
		}
		out = append(out, strings.Join(fields, "|"))
	}
	return out
}

func TestStagerSplices(t *testing.T) {
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
func TestStagerHoldsLongLineOnce(t *testing.T) {
	const size = 24 << 20
	data := strings.Repeat("x", size)
	input := `{"id":"a"}` + "\n" +
		`{"data": "` + data + `", "id": "big", "meta": {"versionId": "1", "tag": [{"code": "t"}]}, "b": null}` + "\n" +
		`{"id":"b"}` + "\n"
	enc := newEncoder(strings.NewReader(input), Options{Type: "P"}, nil)
	out := make([]byte, 0, size+1<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := stageAll(enc, "P", out)
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
	if got := decodeTuples(out); !slices.Equal(got, want) {
		t.Errorf("got %d tuples %.300q, want %.300q", len(got), got, want)
	}
}

// The resource of a long line goes to the COPY after its tuple (encoder.tail),
// on every path: staged, a new type's first line, --merge longer than the
// line, --strip-nulls, and the direct COPY (as jsonb).
func TestStagerLongResources(t *testing.T) {
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

func TestStagerRoutesTypes(t *testing.T) {
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

func TestStagerMergeAndStrip(t *testing.T) {
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

func TestStagerBadLines(t *testing.T) {
	for input, want := range map[string]string{
		"{\"id\":\"1\"}\n[]\n":                        "line 2: not a JSON object",
		"{\"id\":1}\n":                                `line 1: no string "id"`,
		"{\"id\":\"1\",\"resourceType\":\"Q\"}\n":     `line 1: resourceType "Q" is not --type P`,
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

func TestParseMerge(t *testing.T) {
	for in, want := range map[string]string{
		`{}`:                   "",
		`{"a":1, "b": [true]}`: `,"a":1,"b":[true]`,
	} {
		m, err := ParseMerge(in)
		if err != nil || string(m.members) != want {
			t.Errorf("ParseMerge(%s) = %q, %v", in, m.members, err)
		}
	}
	for in, want := range map[string]string{
		`{"a":1,"a":2}`:        `key "a" given twice`,
		`{"resourceType":"X"}`: `cannot set "resourceType"`,
		`[]`:                   "not a JSON object",
		`{`:                    "not valid JSON",
		``:                     "not valid JSON",
	} {
		if _, err := ParseMerge(in); err == nil || err.Error() != want {
			t.Errorf("ParseMerge(%s): %v, want %s", in, err, want)
		}
	}
}

func TestCountsJSON(t *testing.T) {
	c := Counts{"Observation": 20382, "CarePlan": 356}
	c.Add(Counts{"CarePlan": 1})
	if got := c.JSON(); got != `{"CarePlan":357,"Observation":20382}` {
		t.Errorf("JSON() = %s", got)
	}
	if c.Total() != 20739 {
		t.Errorf("Total() = %d", c.Total())
	}
	if got := (Counts{}).JSON(); got != "{}" {
		t.Errorf("empty JSON() = %s", got)
	}
}

func TestTxidBlocksGrow(t *testing.T) {
	var asked []int
	next := int64(0)
	b := &txidBlocks{fetch: func(n int) ([]int64, error) {
		asked = append(asked, n)
		ids := make([]int64, n)
		for i := range ids {
			next++
			ids[i] = next
		}
		return ids, nil
	}}
	for want := int64(1); want <= 300000; want++ {
		got, err := b.next()
		if err != nil || got != want {
			t.Fatalf("next() = %d, %v; want %d", got, err, want)
		}
	}
	if fmt.Sprint(asked[:6]) != "[256 1024 4096 16384 65536 65536]" {
		t.Errorf("block sizes %v", asked)
	}
}

func TestParseMergeRefusesWhatJSONBRefuses(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"\u0000"}`:         `it holds \u0000`,
		`{"a":"x\ud800"}`:        `lone surrogate`,
		`{"a":"\udc00"}`:         `lone surrogate`,
		`{"a":"\ud800\n"}`:       `lone surrogate`,
		`{"a":"\ud800\u0041"}`:   `lone surrogate`,
		`{"\ud800":1}`:           `lone surrogate`,
		`{"a":"\ud83d\ude00"}`:   ``,
		`{"a":"\\u0000\\ud800"}`: ``,
		`{"a":"\u00e9"}`:         ``,
	} {
		_, err := ParseMerge(in)
		switch {
		case want == "" && err != nil:
			t.Errorf("ParseMerge(%s): %v", in, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("ParseMerge(%s) = %v, want %q", in, err, want)
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
