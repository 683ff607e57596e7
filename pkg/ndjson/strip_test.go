package ndjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestAppendStripNulls(t *testing.T) {
	for in, want := range map[string]string{
		`null`:                   `null`,
		`"null"`:                 `"null"`,
		`1`:                      `1`,
		`{}`:                     `{}`,
		`[]`:                     `[]`,
		`[null]`:                 `[null]`,
		`[null,{"a":null},null]`: `[null,{},null]`,
		`{"a":null}`:             `{}`,
		`{"a":null,"b":null}`:    `{}`,
		`{"a":null,"b":1}`:       `{"b":1}`,
		`{"a":1,"b":null}`:       `{"a":1}`,
		`{"a":1,"b":null,"c":2}`: `{"a":1,"c":2}`,
		`{"a":null,"b":null,"c":{"d":null,"e":[null,{"f":null}]},"g":null}`: `{"c":{"e":[null,{}]}}`,
		`{"a":"null","null":1,"b":[{"null":null}],"c":"x\"null"}`:           `{"a":"null","null":1,"b":[{}],"c":"x\"null"}`,
		`{"a\"":null,"b\\":null,"c":"\\"}`:                                  `{"c":"\\"}`,
		`{"a":{},"b":[],"c":{"x":null},"d":[[]]}`:                           `{"a":{},"b":[],"c":{},"d":[[]]}`,
		`{"a":true,"b":false,"c":-1.5e3,"d":null}`:                          `{"a":true,"b":false,"c":-1.5e3}`,
		// Not compact: whitespace outside dropped members stays.
		`{"a" : null , "b" : [1, null], "c": null }`: `{"b" : [1, null] }`,
		`{ "a": 1 , "b" : null}`:                     `{ "a": 1 }`,
	} {
		got, err := AppendStripNulls([]byte("pre"), []byte(in))
		if err != nil || string(got) != "pre"+want {
			t.Errorf("AppendStripNulls(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{``, `{"a":null`, `{"a":null,}`, `{"a":null]`, `[null}`, `{"a" null}`, `{a:null}`, `{"a":"null}`, `{"a":null}x`, `{"a":null,"b":[1 2]}`} {
		if _, err := AppendStripNulls(nil, []byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("AppendStripNulls(%s): %v, want ErrMalformed", bad, err)
		}
	}
}

// TestAppendStripNullsDeep strips one line nested 50,000 levels deep
// (1.15 MB). A pass per level made this quadratic: about three minutes of
// CPU on this line, 70 s on a real 600 KB one.
func TestAppendStripNullsDeep(t *testing.T) {
	line, want := nestedNulls(50000)
	start := time.Now()
	got, err := AppendStripNulls(nil, line)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendStripNulls of a deep line: %v; output %d bytes, want %d", err, len(got), len(want))
	}
	t.Logf("%d bytes in %v", len(line), time.Since(start))
}

// stripNullsReference is AppendStripNulls by other means: encoding/json's
// tokens (which keep the order of members), each value rendered by
// encoding/json; strip false renders v the same way without stripping.
func stripNullsReference(v []byte, strip bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	out, err := referenceValue(dec, nil, strip)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("text after the value")
	}
	return out, nil
}

func referenceValue(dec *json.Decoder, out []byte, strip bool) ([]byte, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		out = append(out, byte(tok))
		n := 0
		for dec.More() {
			var key []byte
			if tok == '{' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ = json.Marshal(k)
			}
			value, err := referenceValue(dec, nil, strip)
			if err != nil {
				return nil, err
			}
			if key != nil && strip && string(value) == "null" {
				continue
			}
			if n++; n > 1 {
				out = append(out, ',')
			}
			if key != nil {
				out = append(append(out, key...), ':')
			}
			out = append(out, value...)
		}
		end, err := dec.Token()
		if err != nil {
			return nil, err
		}
		return append(out, byte(end.(json.Delim))), nil
	case nil:
		return append(out, "null"...), nil
	default:
		b, err := json.Marshal(tok)
		return append(out, b...), err
	}
}

// stripNullsQuadratic is AppendStripNulls as it was before issue #9, kept
// to check that the new one makes the same bytes.
func stripNullsQuadratic(dst, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return dst, fmt.Errorf("%w: missing value", ErrMalformed)
	}
	if !bytes.Contains(v, []byte("null")) {
		return append(dst, v...), nil
	}
	var err error
	switch v[0] {
	case '{':
		dst = append(dst, '{')
		first := true
		merr := Members(v, func(key, value []byte) bool {
			if string(value) == "null" {
				return true
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, '"')
			dst = append(dst, key...)
			dst = append(dst, '"', ':')
			dst, err = stripNullsQuadratic(dst, value)
			return err == nil
		})
		if merr != nil {
			return dst, merr
		}
		return append(dst, '}'), err
	case '[':
		dst = append(dst, '[')
		first := true
		eerr := Elements(v, func(value []byte) {
			if err != nil {
				return
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst, err = stripNullsQuadratic(dst, value)
		})
		if eerr != nil {
			return dst, eerr
		}
		return append(dst, ']'), err
	}
	return append(dst, v...), nil
}

// checkStripNulls compares AppendStripNulls on the valid JSON text v with
// the reference and, on compact text, byte for byte with the old
// implementation.
func checkStripNulls(t *testing.T, v []byte) {
	t.Helper()
	got, err := AppendStripNulls(nil, v)
	if err != nil {
		t.Fatalf("AppendStripNulls(%s): %v", v, err)
	}
	want, err := stripNullsReference(v, true)
	if err != nil {
		t.Fatalf("reference(%s): %v", v, err)
	}
	if canon, err := stripNullsReference(got, false); err != nil || !bytes.Equal(canon, want) {
		t.Fatalf("AppendStripNulls(%s) = %s (%s, %v), want %s", v, got, canon, err, want)
	}
	buf := bytes.Clone(v)
	if in, err := AppendStripNulls(buf[:0], buf); err != nil || !bytes.Equal(in, got) {
		t.Fatalf("AppendStripNulls(%s) in place = %s, %v; want %s", v, in, err, got)
	}
	old, err := stripNullsQuadratic(nil, v)
	if err != nil {
		t.Fatalf("old AppendStripNulls(%s): %v", v, err)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, v) == nil && bytes.Equal(compact.Bytes(), v) {
		if !bytes.Equal(got, old) {
			t.Fatalf("AppendStripNulls(%s) = %s, the old one made %s", v, got, old)
		}
		return
	}
	var a, b bytes.Buffer
	if json.Compact(&a, got) != nil || json.Compact(&b, old) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("AppendStripNulls(%s) = %s, the old one made %s", v, got, old)
	}
}

// randomJSON writes a random JSON value with many nulls, keys and strings
// that spell null, and, when spaces, whitespace between tokens.
func randomJSON(r *rand.Rand, b *strings.Builder, depth int, spaces bool) {
	space := func() {
		if spaces && r.IntN(3) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[r.IntN(4)])
		}
	}
	strs := []string{`"null"`, `"a"`, `"nu\"ll"`, `"\\"`, `"\u006eull"`, `"é"`, `""`, `"x\\\"null"`}
	n := r.IntN(10)
	if depth > 5 {
		n = 4 + r.IntN(6)
	}
	space()
	switch {
	case n < 2:
		b.WriteString("{")
		for k := range r.IntN(5) {
			if k > 0 {
				space()
				b.WriteString(",")
			}
			space()
			b.WriteString(strs[r.IntN(len(strs))])
			space()
			b.WriteString(":")
			randomJSON(r, b, depth+1, spaces)
		}
		space()
		b.WriteString("}")
	case n < 4:
		b.WriteString("[")
		for k := range r.IntN(5) {
			if k > 0 {
				space()
				b.WriteString(",")
			}
			randomJSON(r, b, depth+1, spaces)
		}
		space()
		b.WriteString("]")
	case n < 7:
		b.WriteString("null")
	case n < 8:
		b.WriteString(strs[r.IntN(len(strs))])
	default:
		b.WriteString([]string{"0", "-1.5e3", "true", "false", "12"}[r.IntN(5)])
	}
	space()
}

func TestAppendStripNullsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for i := range 20000 {
		var b strings.Builder
		randomJSON(r, &b, 0, i%2 == 1)
		v := []byte(strings.Trim(b.String(), " \t\r\n"))
		if !json.Valid(v) {
			t.Fatalf("randomJSON made %s", v)
		}
		checkStripNulls(t, v)
	}
}

// FuzzAppendStripNulls checks AppendStripNulls on valid JSON (and on its
// compact form) as checkStripNulls does, and that it never panics on
// anything else.
func FuzzAppendStripNulls(f *testing.F) {
	for _, s := range []string{`{"a":null,"b":[null,{"c":null,"d":"null"}]}`, `[{"a":1,"b":null}]`, `{ "a" : null , "b":1 }`, `null`, `{"a":nul}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		AppendStripNulls(nil, []byte(s)) // any input: only no panic
		v := []byte(strings.Trim(s, " \t\r\n"))
		if !json.Valid(v) {
			return
		}
		checkStripNulls(t, v)
		var compact bytes.Buffer
		if json.Compact(&compact, v) == nil {
			checkStripNulls(t, compact.Bytes())
		}
	})
}
