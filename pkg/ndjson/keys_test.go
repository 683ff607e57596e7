package ndjson

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCompactObjectEscapedKeys(t *testing.T) {
	keys := []string{"id", "meta", `a"b`}
	for _, tc := range []struct {
		in, want string
		members  []string // the member of each of keys found ("" when absent)
	}{
		{`{"\u0069d":"x"}`, `{"id":"x"}`, []string{`"id":"x"`, "", ""}},
		{`{"\u0069\u0064" : "x", "m\u0065ta": {"\u0069d": 1}}`, `{"id":"x","meta":{"\u0069d":1}}`, []string{`"id":"x"`, `"meta":{"\u0069d":1}`, ""}},
		{`{"\u0049d":"x","\u0069D":"y"}`, `{"Id":"x","iD":"y"}`, []string{"", "", ""}},
		{`{"a\u0022b":1,"id":"\u0078"}`, `{"a\"b":1,"id":"\u0078"}`, []string{`"id":"\u0078"`, "", `"a\"b":1`}},
		{`{"a\"b":1}`, `{"a\"b":1}`, []string{"", "", `"a\"b":1`}},
		// Canonical form: minimal escapes, lower-case hex for controls.
		{`{"m\u00e9ta\/x\u001F\t\ud83d\ude00":1}`, "{\"méta/x\\u001f\\t\U0001F600\":1}", []string{"", "", ""}},
		// Not exactly decodable: kept byte for byte, matching nothing.
		{`{"\ud800":1,"id":"x"}`, `{"\ud800":1,"id":"x"}`, []string{`"id":"x"`, "", ""}},
		{`{"i\ud800d":1,"\udc00id":2,"id\ud83d\u0041":3}`, `{"i\ud800d":1,"\udc00id":2,"id\ud83d\u0041":3}`, []string{"", "", ""}},
		{`{"\i\d":1,"\u00zz":2,"\u00":3}`, `{"\i\d":1,"\u00zz":2,"\u00":3}`, []string{"", "", ""}},
		{"{\"\\u0069\td\":1}", "{\"\\u0069\td\":1}", []string{"", "", ""}},
		// Nested keys and values stay as they are.
		{`{"a":{"\u0069d":"\u0069"},"b":["\u0069d"]}`, `{"a":{"\u0069d":"\u0069"},"b":["\u0069d"]}`, []string{"", "", ""}},
	} {
		spans := make([]Span, len(keys))
		got, err := CompactObject([]byte("pre"), []byte(tc.in), keys, spans)
		if err != nil {
			t.Errorf("CompactObject(%s): %v", tc.in, err)
			continue
		}
		if string(got[3:]) != tc.want {
			t.Errorf("CompactObject(%s) = %s, want %s", tc.in, got[3:], tc.want)
		}
		checkInPlace(t, []byte(tc.in), keys, got[3:], spans, 3)
		for k, want := range tc.members {
			var member string
			if spans[k].Found() {
				member = string(got[spans[k].Start:spans[k].End])
			}
			if member != want {
				t.Errorf("CompactObject(%s): member %q = %s, want %s", tc.in, keys[k], member, want)
			}
		}
	}
	for _, in := range []string{
		`{"id":"a","\u0069d":"b"}`,
		`{"\u0069d":"a","id":"b"}`,
		`{"\u0069d":"a","i\u0064":"b"}`,
		`{"meta":{},"m\u0065ta":{}}`,
	} {
		_, err := CompactObject(nil, []byte(in), keys, make([]Span, len(keys)))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "duplicate key") {
			t.Errorf("CompactObject(%s): error %v, want a duplicate key", in, err)
		}
	}
	// Without keys to find, escaped keys are made canonical all the same.
	if got, err := CompactObject(nil, []byte(`{"\u0069d":1}`), nil, nil); err != nil || string(got) != `{"id":1}` {
		t.Errorf("CompactObject without keys = %s, %v", got, err)
	}
}

func TestKeyText(t *testing.T) {
	for _, tc := range []struct {
		raw, text string
		ok        bool
	}{
		{``, ``, true},
		{`id`, `id`, true},
		{`\u0069d`, `id`, true},
		{`\"\\\/\b\f\n\r\t`, "\"\\/\b\f\n\r\t", true},
		{`\u00E9\u00e9`, `éé`, true},
		{`\ud83d\ude00x`, "\U0001F600x", true},
		{`\uD83D\uDE00`, "\U0001F600", true},
		{`\u0000`, "\x00", true},
		{`é\u0041`, `éA`, true},
		{`\ud800`, ``, false},
		{`\udc00`, ``, false},
		{`\ud800\ud800`, ``, false},
		{`\ud800x`, ``, false},
		{`\ud800\u0041`, ``, false},
		{`\ude00\ud83d`, ``, false},
		{`\u12`, ``, false},
		{`\u12g4`, ``, false},
		{`\x41`, ``, false},
		{`\'`, ``, false},
		{`a\`, ``, false},
		{"\\u0041\x01", ``, false},
		{`\u0041"`, ``, false},
		{"\\u0041\xe4", ``, false},
	} {
		text, ok := KeyText([]byte(tc.raw))
		if ok != tc.ok || (ok && string(text) != tc.text) {
			t.Errorf("KeyText(%s) = %q, %v; want %q, %v", tc.raw, text, ok, tc.text, tc.ok)
		}
		if want, wantOK := refKeyText(tc.raw); ok != wantOK || (ok && string(text) != want) {
			t.Errorf("KeyText(%s) = %q, %v; the reference says %q, %v", tc.raw, text, ok, want, wantOK)
		}
	}
	// A key without a backslash is itself: no copy.
	raw := []byte("resourceType")
	if text, ok := KeyText(raw); !ok || &text[0] != &raw[0] || len(text) != len(raw) {
		t.Errorf("KeyText(%s) copied", raw)
	}
}

// FuzzKeyText checks KeyText against encoding/json (with lone surrogates
// and bytes that are not UTF-8, which encoding/json turns into U+FFFD,
// found by a regexp and package utf8).
func FuzzKeyText(f *testing.F) {
	for _, s := range []string{`id`, `\u0069d`, `\ud83d\ude00`, `\ud800`, `\n\"`, `\u00zz`, "a\tb\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		text, ok := KeyText([]byte(raw))
		if !strings.Contains(raw, `\`) {
			if !ok || string(text) != raw {
				t.Fatalf("KeyText(%q) = %q, %v; want it as it is", raw, text, ok)
			}
			return
		}
		want, wantOK := refKeyText(raw)
		if ok != wantOK || (ok && string(text) != want) {
			t.Fatalf("KeyText(%q) = %q, %v; want %q, %v", raw, text, ok, want, wantOK)
		}
		if ok {
			// Canonical form round-trips through encoding/json.
			var back string
			if err := json.Unmarshal(AppendString(nil, text), &back); err != nil || back != string(text) {
				t.Fatalf("KeyText(%q) = %q: canonical form decodes to %q, %v", raw, text, back, err)
			}
		}
	})
}

var uEscape = regexp.MustCompile(`\\+u([0-9a-fA-F]{4})`)

// refKeyText is KeyText by other means: encoding/json decodes, and a lone
// surrogate (which encoding/json replaces by U+FFFD) makes it fail.
func refKeyText(raw string) (string, bool) {
	var text string
	if !utf8.ValidString(raw) || json.Unmarshal([]byte(`"`+raw+`"`), &text) != nil {
		return "", false
	}
	var high bool // the escape before was a high surrogate
	end := -1     // where that escape ended
	for _, m := range uEscape.FindAllStringSubmatchIndex(raw, -1) {
		if (m[2]-1-m[0])%2 == 0 { // an even number of backslashes: `\\u1234` is not an escape
			continue
		}
		v, _ := strconv.ParseUint(raw[m[2]:m[3]], 16, 32)
		low := v >= 0xdc00 && v <= 0xdfff
		if high && (!low || m[2]-2 != end) {
			return "", false
		}
		if low && !high {
			return "", false
		}
		high = !high && v >= 0xd800 && v <= 0xdbff
		end = m[1]
	}
	if high {
		return "", false
	}
	return text, true
}
