package ndjson

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, `{"a":1}`, ` {"a" : [1, -0.5e+10, 0, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]} `,
		`{"a":{"b":[{}]}}`, `"s"`, `-0`, `1E5`, `{"\ud800":"é"}`,
	} {
		if err := Validate([]byte(in)); err != nil {
			t.Errorf("Validate(%s): %v", in, err)
		}
		if !json.Valid([]byte(in)) {
			t.Errorf("encoding/json disagrees: %s", in)
		}
	}
	for in, want := range map[string]string{
		`{"id":"a","x":tru}`:    `bad token "tru" at byte 15`,
		`{"x":truex}`:           `bad token "truex"`,
		`{"x":01}`:              `bad token "01"`,
		`{"x":1.}`:              `bad token "1."`,
		`{"x":-}`:               `bad token "-"`,
		`{"x":+1}`:              `bad token "+1"`,
		`{"x":NaN}`:             `bad token "NaN"`,
		`{"x":"a` + "\t" + `"}`: `a control character (U+0009)`,
		`{"x":"\x"}`:            `bad escape "\\x"`,
		`{"x":"\u12"}`:          `bad \u escape`,
		`{"x":[1,]}`:            `missing value`,
		`{"x":1,}`:              `expected a key`,
		`{"x" 1}`:               `expected ':'`,
		`{"x":1} x`:             `text after the value`,
		`{"x":[1}`:              `expected ',' or ']'`,
		`{"x":"a`:               `unterminated string`,
		`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`: `nested deeper than 10000`,
		`{"x":q` + strings.Repeat("q", 1000) + `}`:                              `…(1001 bytes)" at byte 6`,
	} {
		err := Validate([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%.40s) = %v, want %q", in, err, want)
		}
		if json.Valid([]byte(in)) {
			t.Errorf("encoding/json takes %.40s", in)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	line := []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":180.3,"unit":"cm"},"note":[{"text":"a \"quoted\" word, \u00e9"}]}`)
	b.SetBytes(int64(len(line)))
	for i := 0; i < b.N; i++ {
		if err := Validate(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodingJSONValid(b *testing.B) {
	line := []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":180.3,"unit":"cm"},"note":[{"text":"a \"quoted\" word, \u00e9"}]}`)
	b.SetBytes(int64(len(line)))
	for i := 0; i < b.N; i++ {
		if !json.Valid(line) {
			b.Fatal("invalid")
		}
	}
}

// A byte that ends plain string content, or one that may not be there, is
// judged wherever it stands in a string, as encoding/json judges it.
func TestValidateStringWords(t *testing.T) {
	specials := []string{`"`, `\n`, `\u00e9`, `\x`, `\`, "\x00", "\x01", "\x1f", "\x20", "\x7f", "\x80", "é", "\xff", "!", "#", "[", "]", "\\\\"}
	for n := 0; n <= 26; n++ {
		for p := 0; p <= n; p++ {
			for _, sp := range specials {
				line := []byte(`{"k":"` + strings.Repeat("a", p) + sp + strings.Repeat("b", n-p) + `","n":1}`)
				if got, want := Validate(line) == nil, json.Valid(line); got != want {
					t.Errorf("%q: valid %v, encoding/json says %v", line, got, want)
				}
			}
		}
	}
}
