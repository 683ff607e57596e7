package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// pgEpochMicros is PostgreSQL's timestamp epoch, 2000-01-01, in Unix microseconds.
const pgEpochMicros = 946684800 * 1000000

// tsField is the binary timestamptz field of t (as a COPY row gives it).
func tsField(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixMicro()-pgEpochMicros))
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func encode(t *testing.T, typ string, fhir bool, r Row) string {
	t.Helper()
	line, err := NewEncoder(typ, fhir).AppendLine(nil, r)
	if err != nil {
		t.Fatalf("AppendLine(%s): %v", r.Resource, err)
	}
	return string(line)
}

// The dump splicer: the columns go first, in meta's first members; the
// stored resource's members follow in their order; what the columns own
// is never written twice.
func TestEncoderLines(t *testing.T) {
	ts, cts := tsField(mustTime("2024-01-31T12:00:00.5Z")), tsField(mustTime("2023-05-01T00:00:00Z"))
	row := func(res string) Row {
		return Row{ID: []byte("p1"), Txid: 42, TS: ts, CTS: cts, Resource: []byte(res)}
	}
	const cols = `"versionId":"42","lastUpdated":"2024-01-31T12:00:00.5Z"`
	for _, c := range []struct {
		name, res string
		fhir      bool
		want      string
	}{
		{"no meta", `{"gender": "male", "active": true}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"},"gender":"male","active":true}`},
		{"empty", `{}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"}}`},
		{"meta kept after the columns", `{"meta": {"tag": [{"code": "t"}], "source": "s"}, "name": [{"family": "F"}]}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z","tag":[{"code":"t"}],"source":"s"},"name":[{"family":"F"}]}`},
		{"key order kept, meta anywhere", `{"b": 1, "meta": {"source": "s"}, "a": 2}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z","source":"s"},"b":1,"a":2}`},
		{"stale owned members dropped", `{"meta": {"versionId": "7", "source": "s", "lastUpdated": "1999-01-01T00:00:00Z", "createdAt": "1999-01-01T00:00:00Z"}}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z","source":"s"}}`},
		{"stored id and resourceType dropped", `{"id": "other", "resourceType": "Other", "active": true}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"},"active":true}`},
		{"meta not an object", `{"meta": [1], "active": true}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"},"active":true}`},
		{"meta empty", `{"meta": {}, "active": true}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"},"active":true}`},
		{"FHIR: createdAt as an extension", `{"active": true}`, true,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"extension":[{"url":"ex:createdAt","valueInstant":"2023-05-01T00:00:00Z"}]},"active":true}`},
		{"FHIR: added to the extensions there", `{"meta": {"extension": [{"url": "x", "valueString": "v"}], "source": "s"}}`, true,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"extension":[{"url":"x","valueString":"v"},{"url":"ex:createdAt","valueInstant":"2023-05-01T00:00:00Z"}],"source":"s"}}`},
		{"FHIR: a stale createdAt extension replaced", `{"meta": {"extension": [{"url": "ex:createdAt", "valueInstant": "1999-01-01T00:00:00Z"}, {"url": "x"}]}}`, true,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"extension":[{"url":"x"},{"url":"ex:createdAt","valueInstant":"2023-05-01T00:00:00Z"}]}}`},
		{"FHIR: extension not an array", `{"meta": {"extension": "odd"}}`, true,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"extension":"odd","extension":[{"url":"ex:createdAt","valueInstant":"2023-05-01T00:00:00Z"}]}}`},
		{"Aidbox: meta.extension kept as it is", `{"meta": {"extension": [{"url": "ex:createdAt", "valueInstant": "1999-01-01T00:00:00Z"}]}}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z","extension":[{"url":"ex:createdAt","valueInstant":"1999-01-01T00:00:00Z"}]}}`},
		{"escapes kept", `{"text": "a \"q\" \\ \u00e9 \ud83d\ude00"}`, false,
			`{"resourceType":"Patient","id":"p1","meta":{` + cols + `,"createdAt":"2023-05-01T00:00:00Z"},"text":"a \"q\" \\ \u00e9 \ud83d\ude00"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := encode(t, "Patient", c.fhir, row(c.res)); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestEncoderNullColumns(t *testing.T) {
	r := Row{ID: []byte(`a"b`), Txid: 1, Resource: []byte(`{"meta": {"source": "s"}}`)}
	if got, want := encode(t, "Basic", false, r), `{"resourceType":"Basic","id":"a\"b","meta":{"versionId":"1","source":"s"}}`; got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	if got, want := encode(t, "Basic", true, r), `{"resourceType":"Basic","id":"a\"b","meta":{"versionId":"1","source":"s"}}`; got != want {
		t.Errorf("FHIR:\n got %s\nwant %s", got, want)
	}
	inf := binary.BigEndian.AppendUint64(nil, math.MaxInt64)
	r.TS, r.CTS = inf, inf
	if got, want := encode(t, "Basic", false, r), `{"resourceType":"Basic","id":"a\"b","meta":{"versionId":"1","lastUpdated":"infinity","createdAt":"infinity","source":"s"}}`; got != want {
		t.Errorf("infinity:\n got %s\nwant %s", got, want)
	}
}

func TestEncoderBadRows(t *testing.T) {
	e := NewEncoder("Patient", false)
	for _, res := range []string{`{"meta": {}, "meta": {}}`, `{"a": `, `{"a": 1} x`, `{"id": "1", "id": "2"}`} {
		_, err := e.AppendLine(nil, Row{ID: []byte("x"), Txid: 1, Resource: []byte(res)})
		var bad *BadResourceError
		if !errors.As(err, &bad) {
			t.Errorf("%s: %v, want a BadResourceError", res, err)
		}
	}
	// A timestamptz field of the wrong size is the stream's fault, not the row's.
	_, err := e.AppendLine(nil, Row{ID: []byte("x"), Txid: 1, TS: []byte{1, 2}, Resource: []byte(`{}`)})
	var bad *BadResourceError
	if err == nil || errors.As(err, &bad) {
		t.Errorf("bad ts field: %v", err)
	}
	// The encoder is reusable after an error.
	if line, err := e.AppendLine(nil, Row{ID: []byte("y"), Txid: 2, Resource: []byte(`{"b": 1}`)}); err != nil || string(line) != `{"resourceType":"Patient","id":"y","meta":{"versionId":"2"},"b":1}` {
		t.Errorf("after an error: %s, %v", line, err)
	}
}

func TestEncoderAllocs(t *testing.T) {
	e := NewEncoder("Observation", true)
	r := Row{ID: []byte("o1"), Txid: 9, TS: tsField(time.Now()), CTS: tsField(time.Now()),
		Resource: []byte(`{"meta": {"tag": [{"code": "t"}], "extension": [{"url": "x"}]}, "status": "final", "valueQuantity": {"value": 1.5}}`)}
	b, _ := e.AppendLine(nil, r)
	if n := testing.AllocsPerRun(100, func() { b, _ = e.AppendLine(b[:0], r) }); n != 0 {
		t.Errorf("%v allocations per line", n)
	}
}

// decoded is a line taken apart by the load direction of the codec.
type decoded struct {
	id, typ string
	cols    Cols
	res     []byte
}

// decode takes line apart as load does: compacted with Keys looked up,
// id and resourceType read, the resource built by Decoder.Resource.
func decode(d *Decoder, line []byte) (decoded, error) {
	var out decoded
	spans := make([]ndjson.Span, NumKeys)
	compact, err := ndjson.CompactObject(nil, line, Keys[:], spans)
	if err != nil {
		return out, err
	}
	id, ok := ndjson.Unquote(Value(compact, spans[KeyID]))
	if !ok {
		return out, errors.New("no string id")
	}
	typ, ok := ndjson.Unquote(Value(compact, spans[KeyResourceType]))
	if !ok {
		return out, errors.New("no string resourceType")
	}
	out.id, out.typ = string(id), string(typ)
	res, cols, err := d.Resource(compact, spans, Value(compact, spans[KeyMeta]), nil)
	out.res, out.cols = bytes.Clone(res), cols
	return out, err
}

func TestDecoderResource(t *testing.T) {
	for _, c := range []struct {
		name, line string
		fhir       bool
		want       string
		cts, ts    string
		txid       int64
	}{
		{"owned taken out", `{"resourceType":"Patient","id":"p","meta":{"versionId":"3","lastUpdated":"2024-01-01T00:00:00Z","createdAt":"2023-01-01T00:00:00Z","source":"s"},"active":true}`, false,
			`{"active":true,"meta":{"source":"s"}}`, "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", 3},
		{"meta dropped when empty", `{"resourceType":"Patient","id":"p","meta":{"versionId":"W/3"},"active":true}`, false,
			`{"active":true}`, "", "", 0},
		{"meta not an object kept", `{"resourceType":"Patient","id":"p","meta":7}`, false,
			`{"meta":7}`, "", "", 0},
		{"FHIR createdAt extension", `{"resourceType":"Patient","id":"p","meta":{"extension":[{"url":"x"},{"url":"ex:createdAt","valueInstant":"2023-01-01T00:00:00Z"}]}}`, true,
			`{"meta":{"extension":[{"url":"x"}]}}`, "2023-01-01T00:00:00Z", "", 0},
		{"FHIR createdAt extension alone", `{"resourceType":"Patient","id":"p","meta":{"extension":[{"url":"ex:createdAt","valueDateTime":"2023-01-01T00:00:00Z"}]}}`, true,
			`{}`, "2023-01-01T00:00:00Z", "", 0},
		{"Aidbox: the extension is data", `{"resourceType":"Patient","id":"p","meta":{"extension":[{"url":"ex:createdAt","valueInstant":"2023-01-01T00:00:00Z"}]}}`, false,
			`{"meta":{"extension":[{"url":"ex:createdAt","valueInstant":"2023-01-01T00:00:00Z"}]}}`, "", "", 0},
		{"escaped key", `{"resourceType":"Patient","id":"p","meta":{"\u0076ersionId":"5"}}`, false,
			`{}`, "", "", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decode(&Decoder{FHIR: c.fhir, Preserve: true}, []byte(c.line))
			if err != nil {
				t.Fatal(err)
			}
			if string(got.res) != c.want || got.cols.Txid != c.txid || !sameTime(got.cols.CTS, c.cts) || !sameTime(got.cols.TS, c.ts) {
				t.Errorf("got %s %+v, want %s cts %s ts %s txid %d", got.res, got.cols, c.want, c.cts, c.ts, c.txid)
			}
		})
	}
	for _, bad := range []string{
		`{"resourceType":"Patient","id":"p","meta":{"createdAt":"yesterday"}}`,
		`{"resourceType":"Patient","id":"p","meta":{"versionId":"9007199254740992"}}`,
		`{"resourceType":"Patient","id":"p","meta":{"createdAt":"0000-12-31T00:00:00Z"}}`,
	} {
		if _, err := decode(&Decoder{Preserve: true}, []byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func sameTime(t *time.Time, s string) bool {
	if t == nil || s == "" {
		return t == nil && s == ""
	}
	return t.Equal(mustTime(s))
}

// jsonbText prints JSON text v as PostgreSQL prints a jsonb: object keys
// sorted by length then bytes, the last of a repeated key kept, ", " and
// ": " between members and elements. Numbers are left as written (jsonb
// normalizes them, which the codec never looks at). ok is false when v is
// not one JSON value.
func jsonbText(v []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var b strings.Builder
	if err := jsonbValue(d, &b); err != nil {
		return "", false
	}
	if _, err := d.Token(); err != io.EOF {
		return "", false
	}
	return b.String(), true
}

func jsonbValue(d *json.Decoder, b *strings.Builder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '[':
			b.WriteByte('[')
			for i := 0; d.More(); i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				if err := jsonbValue(d, b); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case '{':
			members := map[string]string{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return err
				}
				var vb strings.Builder
				if err := jsonbValue(d, &vb); err != nil {
					return err
				}
				members[k.(string)] = vb.String()
			}
			keys := make([]string, 0, len(members))
			for k := range members {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				if len(a) != len(b) {
					return len(a) - len(b)
				}
				return strings.Compare(a, b)
			})
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteString(", ")
				}
				b.Write(ndjson.AppendString(nil, []byte(k)))
				b.WriteString(": ")
				b.WriteString(members[k])
			}
			b.WriteByte('}')
		}
		_, err := d.Token() // the closing delimiter
		return err
	case string:
		b.Write(ndjson.AppendString(nil, []byte(tok)))
	case json.Number:
		b.WriteString(tok.String())
	case bool:
		fmt.Fprint(b, tok)
	case nil:
		b.WriteString("null")
	}
	return nil
}

// storable makes resource JSON text what the codec's contract takes as a
// stored resource, or reports false: an object, without id and
// resourceType (Aidbox never stores them: the columns own them), whose
// meta, if any, is a non-empty object without the members the columns own
// (FHIR: nor an extension item that mentions ex:createdAt, which dump
// takes for a stale createdAt, nor an empty extension array, where
// createdAt goes), printed as jsonb prints it.
func storable(resource []byte, fhir bool) (string, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(resource, &obj); err != nil || obj == nil {
		return "", false
	}
	delete(obj, "id")
	delete(obj, "resourceType")
	if raw, ok := obj["meta"]; ok {
		var meta map[string]json.RawMessage
		if json.Unmarshal(raw, &meta) != nil || meta == nil {
			delete(obj, "meta")
		} else {
			for _, k := range metaOwned {
				delete(meta, k)
			}
			if ext, ok := meta["extension"]; ok && fhir {
				var items []json.RawMessage
				if json.Unmarshal(ext, &items) == nil {
					kept := items[:0]
					for _, item := range items {
						if !bytes.Contains(item, []byte(CreatedAtURL)) {
							kept = append(kept, item)
						}
					}
					if len(kept) == 0 {
						delete(meta, "extension")
					} else {
						meta["extension"], _ = json.Marshal(kept)
					}
				}
			}
			if len(meta) == 0 {
				delete(obj, "meta")
			} else {
				obj["meta"], _ = json.Marshal(meta)
			}
		}
	}
	text, err := json.Marshal(obj)
	if err != nil {
		return "", false
	}
	return jsonbText(text)
}

// seeds are real resources: the first lines of testdata/sample under
// 1500 bytes (the fuzzer minimizes what it finds: small is fast).
func seeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"Patient", "Observation", "Condition", "examples"} {
		file, err := os.Open("../../testdata/sample/" + name + ".ndjson")
		if err != nil {
			f.Fatal(err)
		}
		r := bufio.NewReaderSize(file, 1<<20)
		for n := 0; n < 3; {
			line, err := r.ReadBytes('\n')
			if line = bytes.TrimSpace(line); len(line) > 0 && len(line) < 1500 {
				out = append(out, line)
				n++
			}
			if err != nil {
				break
			}
		}
		file.Close()
	}
	return append(out,
		[]byte(`{"meta":{"source":"s","extension":[{"url":"x"},{"url":"ex:createdAt","valueInstant":"2020-01-01T00:00:00Z"}]},"a":[1,{"b":null}]}`),
		[]byte(`{}`), []byte(`{"meta":{"tag":[]}}`), []byte(`{"x":"\u00e9\"\\\n"}`))
}

// FuzzRowRoundTrip pins dump ∘ load = id at the row level, without a
// database: a row (id, txid, ts, cts, resource as jsonb prints it) made a
// line by the Encoder and taken apart by the Decoder gives back the same
// columns and, printed as jsonb prints it, the same resource. And the
// converse for the lines dump writes: such a line taken apart and made a
// line again is the same line, byte for byte.
//
// The contract's domain: a stored resource as storable makes it; an id of
// UTF-8 text without NUL (PostgreSQL text); a txid from 1 to
// MaxPreservedTxid (what --preserve-meta keeps); ts and cts NULL or in the
// years 0001–9999 (what load takes: "infinity" dumps but does not load).
func FuzzRowRoundTrip(f *testing.F) {
	for i, s := range seeds(f) {
		f.Add(s, fmt.Sprint("id-", i), int64(i+1), int64(757382400123456), int64(-31536000000000), uint8(i), i%2 == 1)
	}
	f.Fuzz(func(t *testing.T, resource []byte, id string, txid, ts, cts int64, nulls uint8, fhir bool) {
		stored, ok := storable(resource, fhir)
		if !ok || id == "" || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 || txid < 1 || txid > MaxPreservedTxid {
			t.Skip()
		}
		const lo, hi = -63082281600000000, 252455615999999999 // 0001-01-01, 9999-12-31T23:59:59.999999 in microseconds since 2000
		field := func(us int64, null bool) ([]byte, *time.Time) {
			if null {
				return nil, nil
			}
			us = lo + int64(uint64(us)%uint64(hi-lo+1))
			t := time.UnixMicro(us + pgEpochMicros)
			return binary.BigEndian.AppendUint64(nil, uint64(us)), &t
		}
		row := Row{ID: []byte(id), Txid: txid, Resource: []byte(stored)}
		var wantTS, wantCTS *time.Time
		row.TS, wantTS = field(ts, nulls&1 != 0)
		row.CTS, wantCTS = field(cts, nulls&2 != 0)

		line, err := NewEncoder("Basic", fhir).AppendLine(nil, row)
		if err != nil {
			t.Fatalf("encode %s: %v", stored, err)
		}
		if !json.Valid(line) {
			t.Fatalf("not JSON: %s", line)
		}
		dec := &Decoder{FHIR: fhir, Preserve: true}
		got, err := decode(dec, line)
		if err != nil {
			t.Fatalf("decode %s: %v", line, err)
		}
		back, ok := jsonbText(got.res)
		switch {
		case !ok:
			t.Fatalf("decoded resource is not JSON: %s", got.res)
		case got.id != id || got.typ != "Basic":
			t.Errorf("id, type %q %q, want %q Basic", got.id, got.typ, id)
		case got.cols.Txid != txid:
			t.Errorf("txid %d, want %d", got.cols.Txid, txid)
		case !timeEqual(got.cols.TS, wantTS) || !timeEqual(got.cols.CTS, wantCTS):
			t.Errorf("ts %v cts %v, want %v %v", got.cols.TS, got.cols.CTS, wantTS, wantCTS)
		case back != stored:
			t.Errorf("resource\n got %s\nwant %s\nline %s", back, stored, line)
		}

		// The converse: the line dump wrote comes out of load and dump again unchanged.
		again := Row{ID: []byte(got.id), Txid: got.cols.Txid, Resource: got.res}
		if got.cols.TS != nil {
			again.TS = tsField(*got.cols.TS)
		}
		if got.cols.CTS != nil {
			again.CTS = tsField(*got.cols.CTS)
		}
		line2, err := NewEncoder("Basic", fhir).AppendLine(nil, again)
		if err != nil || !bytes.Equal(line2, line) {
			t.Errorf("line again:\n got %s (%v)\nwant %s", line2, err, line)
		}
	})
}

func timeEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// One encoder, rows whose instants repeat and change: each line says its
// own row's (the remembered text of the row before is only a shortcut).
func TestEncoderInstantsRepeat(t *testing.T) {
	e := NewEncoder("Patient", false)
	a, b := mustTime("2024-01-02T03:04:05.123456Z"), mustTime("2025-06-07T08:09:10Z")
	inf := binary.BigEndian.AppendUint64(nil, math.MaxInt64)
	for i, c := range []struct {
		ts, cts []byte
		want    string
	}{
		{tsField(a), tsField(a), `"lastUpdated":"2024-01-02T03:04:05.123456Z","createdAt":"2024-01-02T03:04:05.123456Z"`},
		{tsField(a), tsField(b), `"lastUpdated":"2024-01-02T03:04:05.123456Z","createdAt":"2025-06-07T08:09:10Z"`},
		{tsField(b), tsField(b), `"lastUpdated":"2025-06-07T08:09:10Z","createdAt":"2025-06-07T08:09:10Z"`},
		{inf, nil, `"lastUpdated":"infinity"}`},
		{tsField(b), tsField(a), `"lastUpdated":"2025-06-07T08:09:10Z","createdAt":"2024-01-02T03:04:05.123456Z"`},
		{[]byte{1, 2, 3}, nil, ""},
		{tsField(b), nil, `"lastUpdated":"2025-06-07T08:09:10Z"}`},
	} {
		line, err := e.AppendLine(nil, Row{ID: []byte("p"), Txid: 1, TS: c.ts, CTS: c.cts, Resource: []byte(`{}`)})
		if c.want == "" {
			if err == nil {
				t.Errorf("row %d: a 3-byte timestamptz gave no error", i)
			}
			continue
		}
		if err != nil || !strings.Contains(string(line), c.want) {
			t.Errorf("row %d: %s, %v; want %s in it", i, line, err, c.want)
		}
	}
}
