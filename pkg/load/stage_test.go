package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// tuples runs a stager over input until the input ends, admitting every new
// type at once, and returns the staged tuples as "type|line|id|cts|resource".
func tuples(t *testing.T, input, typ string, merge *Merge, strip bool) ([]string, *stager, error) {
	t.Helper()
	st := newStager(strings.NewReader(input), Options{Type: typ, Merge: merge, StripNulls: strip}, nil)
	if typ != "" {
		st.admit(typ)
	}
	var data []byte
	for {
		chunk, err := io.ReadAll(st)
		data = append(data, chunk...)
		if err != nil {
			return nil, st, err
		}
		if st.newType == "" {
			break
		}
		st.admit(st.newType)
	}
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
	return out, st, nil
}

func TestStagerSplices(t *testing.T) {
	input := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"x","profile":["p"]},"name":[{"given":["A"]}]}` + "\n" +
		"\n" +
		`  {"id" : "p\"2", "active": true}  ` + "\r\n" +
		`{"id":"p3","meta":{"versionId":"1","createdAt":"2020-01-01T00:00:00Z"}}` // no final newline
	got, st, err := tuples(t, input, "Patient", nil, false)
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
	if st.counts["Patient"] != 3 || st.line != 4 {
		t.Errorf("counts %v, lines %d", st.counts, st.line)
	}
	if !st.ids.unique("Patient") {
		t.Error("ids are unique")
	}
}

func TestStagerRoutesTypes(t *testing.T) {
	input := `{"resourceType":"A","id":"1"}
{"resourceType":"B","id":"1"}
{"resourceType":"A","id":"2"}
{"resourceType":"A","id":"1"}
`
	got, st, err := tuples(t, input, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ";") != `A|1|1|NULL|NULL|NULL|{};B|2|1|NULL|NULL|NULL|{};A|3|2|NULL|NULL|NULL|{};A|4|1|NULL|NULL|NULL|{}` {
		t.Errorf("tuples %q", got)
	}
	if strings.Join(st.order, ",") != "A,B" || st.counts["A"] != 3 || st.counts["B"] != 1 {
		t.Errorf("order %v counts %v", st.order, st.counts)
	}
	if st.ids.unique("A") || !st.ids.unique("B") {
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
