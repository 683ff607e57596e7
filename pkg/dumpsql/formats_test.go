package dumpsql

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
)

func TestCSVField(t *testing.T) {
	for in, want := range map[string]string{
		"plain":       "plain",
		"":            `""`,
		"a,b":         `"a,b"`,
		`say "hi"`:    `"say ""hi"""`,
		"line\nbreak": "\"line\nbreak\"",
		"cr\rhere":    "\"cr\rhere\"",
		" spaces ":    " spaces ",
		"tab\there":   "tab\there",
		`\x00ff`:      `\x00ff`,
	} {
		got := string(appendCSVField(nil, []byte(in)))
		if got != want {
			t.Errorf("appendCSVField(%q) = %q, want %q", in, got, want)
		}
		if in == "" {
			continue
		}
		rec, err := csv.NewReader(strings.NewReader(got + "\n")).Read()
		if err != nil || len(rec) != 1 || (rec[0] != in && strings.ReplaceAll(in, "\r", "") != rec[0]) {
			t.Errorf("encoding/csv reads %q back as %q, %v", got, rec, err)
		}
	}
}

func TestCopyText(t *testing.T) {
	in := "a\\b\tc\nd\re\bf\fg\vh é"
	want := `a\\b\tc\nd\re\bf\fg\vh é`
	if got := string(appendCopyText(nil, []byte(in))); got != want {
		t.Errorf("appendCopyText = %q, want %q", got, want)
	}
	if got := string(appendCopyRow(nil, [][]byte{[]byte("x"), nil, []byte("")})); got != "x\t\\N\t\n" {
		t.Errorf("appendCopyRow = %q", got)
	}
}

func TestJSONValues(t *testing.T) {
	for _, tc := range []struct {
		oid  uint32
		in   []byte
		want string
	}{
		{oidNumeric, []byte("12345678901234567890.123456789"), "12345678901234567890.123456789"},
		{oidNumeric, []byte("NaN"), `"NaN"`},
		{oidFloat8, []byte("-Infinity"), `"-Infinity"`},
		{oidFloat8, []byte("1e+300"), "1e+300"},
		{oidInt8, []byte("-5"), "-5"},
		{oidBool, []byte("t"), "true"},
		{oidJSON, []byte("{\n  \"a\" : [1, 2]\n}"), `{"a":[1,2]}`},
		{oidJSONB, []byte(`"s"`), `"s"`},
		{25, []byte("t\"x"), `"t\"x"`},
		{25, nil, "null"},
	} {
		if got := string(appendJSONValue(nil, tc.oid, tc.in)); got != tc.want {
			t.Errorf("appendJSONValue(%d, %q) = %s, want %s", tc.oid, tc.in, got, tc.want)
		}
	}
}

func TestUniqueNames(t *testing.T) {
	got := uniqueNames([]column{{name: "a"}, {name: "a"}, {name: "a_2"}, {name: `we"ird`}})
	if strings.Join(got, " ") != `"a" "a_2" "a_2_2" "we""ird"` {
		t.Errorf("uniqueNames = %v", got)
	}
}

func TestElasticDocument(t *testing.T) {
	e := &elasticEncoder{index: "i"}
	cols := []column{{name: "resource", oid: oidJSONB}}
	b := e.header(nil, cols)
	b = e.row(b, cols, [][]byte{[]byte(`{"a": 1}`)})
	b = e.row(b, cols, [][]byte{nil})
	want := "{\"index\":{\"_index\":\"i\"}}\n{\"a\":1}\n{\"index\":{\"_index\":\"i\"}}\n{\"resource\":null}\n"
	if !bytes.Equal(b, []byte(want)) {
		t.Errorf("elastic rows:\n%s\nwant:\n%s", b, want)
	}
}
