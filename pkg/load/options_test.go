package load

import (
	"strings"
	"testing"
)

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
