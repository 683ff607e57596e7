// Package ndjson works on newline-delimited JSON at the byte level: it escapes
// strings, removes insignificant whitespace and finds top-level members of an
// object without decoding it, so that hot paths never build a map per line.
//
// The functions here trust their input to be well-formed JSON (as PostgreSQL's
// jsonb output always is); on malformed input they return an error rather than
// guessing, but they do not validate everything a full parser would.
package ndjson

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrMalformed matches (errors.Is) every *SyntaxError.
var ErrMalformed = errors.New("malformed JSON")

// SyntaxError is JSON text the byte scanner cannot make sense of; Reason
// says what, for a person ("unterminated string").
type SyntaxError struct{ Reason string }

func (e *SyntaxError) Error() string { return "malformed JSON: " + e.Reason }

// Is makes errors.Is(err, ErrMalformed) hold.
func (e *SyntaxError) Is(target error) bool { return target == ErrMalformed }

// LineReason words an error of the scanner about one line for a person:
// "not a JSON object", or "invalid JSON: " and what is wrong.
func LineReason(err error) string {
	var se *SyntaxError
	switch {
	case !errors.As(err, &se):
		return err.Error()
	case se.Reason == "not an object":
		return "not a JSON object"
	}
	return "invalid JSON: " + se.Reason
}

func malformed(format string, args ...any) error {
	return &SyntaxError{Reason: fmt.Sprintf(format, args...)}
}

const hex = "0123456789abcdef"

// AppendString appends s to dst as a JSON string literal. Only the quote, the
// backslash and control characters are escaped; every other byte (non-ASCII
// UTF-8 included) is copied unchanged.
func AppendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// stringEnd returns the index just past the closing quote of the JSON string
// whose opening quote is at src[i].
func stringEnd(src []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(src[j:], '"')
		if k < 0 {
			return 0, malformed("unterminated string")
		}
		q := j + k
		// A quote is escaped when an odd number of backslashes precede it.
		bs := 0
		for p := q - 1; p > i && src[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

// keyEnd is stringEnd for a key that also tells whether the key has an
// escape (the rare case that needs decoding). It looks for '"' and '\\'
// eight bytes at a time, so an ordinary key costs what stringEnd does.
func keyEnd(src []byte, i int) (end int, escaped bool, err error) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	j := i + 1
	for {
		// Find the first '"' or '\\' at or after j: a byte of w^pattern
		// is zero there, and x-ones &^ x marks the lowest zero byte of x
		// exactly (the borrows only reach bytes above it).
		for j+8 <= len(src) {
			w := binary.LittleEndian.Uint64(src[j:])
			q, b := w^(ones*'"'), w^(ones*'\\')
			if m := ((q-ones)&^q | (b-ones)&^b) & highs; m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		for j < len(src) && src[j] != '"' && src[j] != '\\' {
			j++
		}
		if j >= len(src) {
			return 0, false, malformed("unterminated string")
		}
		if src[j] == '"' {
			return j + 1, escaped, nil
		}
		escaped = true
		j += 2
	}
}

// appendEscapedKey appends the key whose raw text (between its quotes)
// contains a backslash, in canonical form when it decodes exactly, else as it
// is, and returns the index in keys of its decoded text (-1: none).
func appendEscapedKey(dst, raw []byte, keys []string) ([]byte, int) {
	var buf [64]byte
	text, ok := appendUnescaped(buf[:0], raw)
	if !ok {
		dst = append(dst, '"')
		dst = append(dst, raw...)
		return append(dst, '"'), -1
	}
	match := -1
	for k, key := range keys {
		if string(text) == key {
			match = k
			break
		}
	}
	return AppendString(dst, text), match
}

// KeyText returns the text of a key as Members, SplitMembers and Member.Key
// give it (the raw bytes between its quotes, escapes as they are), so that
// a key can be compared by what it spells: `\u0069d` is "id". A key
// without a backslash is returned as it is (no copy, not checked). With
// one, the decoded text is a new slice, and ok is false when it cannot be
// decoded exactly: an unknown escape, a bad \u escape, a lone UTF-16
// surrogate such as \ud800 (which PostgreSQL's jsonb rejects too), a raw
// control character or quote, or bytes that are not UTF-8. Such a key
// matches nothing; it is never turned into U+FFFD.
func KeyText(raw []byte) (text []byte, ok bool) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	return appendUnescaped(nil, raw)
}

// appendUnescaped appends the decoded text of the raw JSON string content
// raw (without quotes) to dst. Bytes other than escapes are copied as they
// are; ok is false where KeyText's is.
func appendUnescaped(dst, raw []byte) ([]byte, bool) {
	if !utf8.Valid(raw) {
		return dst, false
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < 0x20 || c == '"' {
			return dst, false
		}
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' && raw[j] >= 0x20 && raw[j] != '"' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		if i+1 == len(raw) {
			return dst, false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i+2)
			if !ok {
				return dst, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by a low one spells a rune.
				if r >= 0xdc00 || i+1 >= len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return dst, false
				}
				lo, ok := hex4(raw, i+2)
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return dst, false
				}
				r = utf16.DecodeRune(r, lo)
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, true
}

// hex4 decodes the four hex digits at raw[i:i+4].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// Span is the position of one top-level member `"key":value` in a compact
// object: Start is the key's opening quote, End is just past the value.
// Start is -1 when the member is absent.
type Span struct{ Start, End int }

// Found reports whether the member exists.
func (s Span) Found() bool { return s.Start >= 0 }

// CompactObject appends the JSON object src to dst with all insignificant
// whitespace removed, and reports in spans[k] where the top-level member
// named keys[k] sits in the appended text (offsets into the returned slice;
// one of keys found twice in src is an error). spans must be as long
// as keys; it is passed in so the hot path does not allocate.
//
// A top-level key is matched by the text it spells: `"\u0069d"` is "id".
// A top-level key with a backslash in it is written in canonical form
// (decoded, then escaped as AppendString does), so on valid JSON the text
// of a matched key in dst is always exactly AppendString of keys[k]: `"id"`. One that
// cannot be decoded exactly (see KeyText) is copied as it is and matches
// nothing. Nested keys and all values are copied as they are.
//
// It is one pass over src; strings are copied whole after a
// bytes.IndexByte search, so it runs near memcpy speed on FHIR resources,
// whose bytes are mostly inside strings.
//
// dst may be src[:0]: the text is compacted in place. Nothing is ever
// written ahead of what is read (whitespace only goes, and a canonical key
// is never longer than its escaped form), so a 200 MB line needs no second
// buffer of its size.
func CompactObject(dst, src []byte, keys []string, spans []Span) ([]byte, error) {
	for k := range spans {
		spans[k] = Span{Start: -1, End: -1}
	}
	i := 0
	for i < len(src) && isSpace(src[i]) {
		i++
	}
	if i == len(src) || src[i] != '{' {
		return dst, malformed("not an object")
	}
	depth := 0
	expectKey := false // at depth 1, the next string is a member's key
	cur := -1          // index in keys of the member being copied, or -1
	for ; i < len(src); i++ {
		c := src[i]
		switch c {
		case ' ', '\n', '\t', '\r':
			continue
		case '"':
			if expectKey {
				expectKey = false
				end, escaped, err := keyEnd(src, i)
				if err != nil {
					return dst, err
				}
				start := len(dst)
				match := -1
				if escaped {
					dst, match = appendEscapedKey(dst, src[i+1:end-1], keys)
				} else {
					name := src[i+1 : end-1]
					for k, key := range keys {
						if len(name) == len(key) && string(name) == key {
							match = k
							break
						}
					}
					dst = append(dst, src[i:end]...)
				}
				if match >= 0 {
					if spans[match].Found() {
						return dst, malformed("duplicate key %q", keys[match])
					}
					spans[match].Start = start
					cur = match
				}
				i = end - 1
				continue
			}
			end, err := stringEnd(src, i)
			if err != nil {
				return dst, err
			}
			dst = append(dst, src[i:end]...)
			i = end - 1
			continue
		case '{', '[':
			depth++
			if depth == 1 {
				expectKey = true
			}
		case '}', ']':
			if depth == 1 {
				if cur >= 0 {
					spans[cur].End = len(dst)
				}
				dst = append(dst, c)
				for i++; i < len(src); i++ {
					if !isSpace(src[i]) {
						return dst, malformed("text after the object")
					}
				}
				return dst, nil
			}
			depth--
		case ',':
			if depth == 1 {
				if cur >= 0 {
					spans[cur].End = len(dst)
					cur = -1
				}
				expectKey = true
			}
		}
		dst = append(dst, c)
	}
	return dst, malformed("unterminated object")
}

// AppendKey appends `"key":`, key being the raw text between the quotes
// (escaped as it must be, as Members and CompactObject give keys).
func AppendKey(dst, key []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

// AppendMember appends the member `"key":value` (key as for AppendKey,
// value compact JSON).
func AppendMember(dst, key, value []byte) []byte {
	return append(AppendKey(dst, key), value...)
}

// AppendMembersExcept appends the members of the compact object obj (as made
// by CompactObject) except those at the given spans, each kept run preceded
// by a comma and without the object's braces: for obj `{"a":1,"b":2,"c":3}`
// and the span of "b" it appends `,"a":1,"c":3`.
func AppendMembersExcept(dst, obj []byte, spans ...Span) []byte {
	var order [8]Span
	found := sortSpans(order[:0], spans)
	pos := 1
	emit := func(seg []byte) {
		if len(seg) > 0 && seg[0] == ',' {
			seg = seg[1:]
		}
		if len(seg) > 0 && seg[len(seg)-1] == ',' {
			seg = seg[:len(seg)-1]
		}
		if len(seg) > 0 {
			dst = append(dst, ',')
			dst = append(dst, seg...)
		}
	}
	for _, s := range found {
		emit(obj[pos:s.Start])
		pos = s.End
	}
	emit(obj[pos : len(obj)-1])
	return dst
}

// RemoveMembers removes the members at the given spans (as CompactObject
// reports them) from the compact object obj in place, the members after
// them moving back, and returns what is left of obj: a compact object
// still (for `{"a":1,"b":2,"c":3}` and the span of "b", `{"a":1,"c":3}`).
// It is AppendMembersExcept without a second buffer; the removed members'
// bytes are overwritten.
func RemoveMembers(obj []byte, spans ...Span) []byte {
	var order [8]Span
	found := sortSpans(order[:0], spans)
	n, pos := 1, 1 // obj[:n] is written; obj[pos:] is still to read
	keep := func(seg []byte) {
		if len(seg) > 0 && seg[0] == ',' {
			seg = seg[1:]
		}
		if len(seg) > 0 && seg[len(seg)-1] == ',' {
			seg = seg[:len(seg)-1]
		}
		if len(seg) == 0 {
			return
		}
		// A removed member and its comma lie between what is written and
		// seg, so the comma never lands on seg.
		if n > 1 {
			obj[n] = ','
			n++
		}
		n += copy(obj[n:], seg)
	}
	for _, s := range found {
		keep(obj[pos:s.Start])
		pos = s.End
	}
	keep(obj[pos : len(obj)-1])
	obj[n] = '}'
	return obj[:n+1]
}

// sortSpans appends the found spans to dst in the order of their position
// (there are only ever a few).
func sortSpans(dst, spans []Span) []Span {
	for _, s := range spans {
		if !s.Found() {
			continue
		}
		j := len(dst)
		dst = append(dst, s)
		for j > 0 && dst[j-1].Start > s.Start {
			dst[j] = dst[j-1]
			j--
		}
		dst[j] = s
	}
	return dst
}

// skipValue returns the index just past the JSON value starting at src[i]
// (src[i] is not whitespace). Nested whitespace is tolerated.
func skipValue(src []byte, i int) (int, error) {
	if i >= len(src) {
		return 0, malformed("missing value")
	}
	switch src[i] {
	case '"':
		return stringEnd(src, i)
	case '{', '[':
		depth := 0
		for ; i < len(src); i++ {
			switch src[i] {
			case '"':
				end, err := stringEnd(src, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, malformed("unterminated value")
	default:
		j := i
		for j < len(src) {
			c := src[j]
			if c == ',' || c == '}' || c == ']' || isSpace(c) {
				break
			}
			j++
		}
		if j == i {
			return 0, malformed("missing value")
		}
		return j, nil
	}
}

// Members calls fn for each top-level member of the JSON object obj, in
// order, with the raw key (between its quotes, escapes left as they are:
// KeyText decodes it) and the raw value. Whitespace between tokens is allowed. fn returning false
// stops the walk.
func Members(obj []byte, fn func(key, value []byte) bool) error {
	i := 0
	skip := func() {
		for i < len(obj) && isSpace(obj[i]) {
			i++
		}
	}
	skip()
	if i == len(obj) || obj[i] != '{' {
		return malformed("not an object")
	}
	i++
	skip()
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return malformed("expected a key")
		}
		kend, err := stringEnd(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : kend-1]
		i = kend
		skip()
		if i >= len(obj) || obj[i] != ':' {
			return malformed("expected ':'")
		}
		i++
		skip()
		vend, err := skipValue(obj, i)
		if err != nil {
			return err
		}
		if !fn(key, obj[i:vend]) {
			return nil
		}
		i = vend
		skip()
		if i >= len(obj) {
			return malformed("unterminated object")
		}
		switch obj[i] {
		case ',':
			i++
			skip()
		case '}':
			return nil
		default:
			return malformed("expected ',' or '}'")
		}
	}
}

// AppendCompact appends the JSON value src (any kind) with insignificant
// whitespace removed.
func AppendCompact(dst, src []byte) ([]byte, error) {
	start := len(dst)
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case ' ', '\n', '\t', '\r':
			continue
		case '"':
			end, err := stringEnd(src, i)
			if err != nil {
				return dst[:start], err
			}
			dst = append(dst, src[i:end]...)
			i = end - 1
			continue
		}
		dst = append(dst, c)
	}
	if len(dst) == start {
		return dst, malformed("empty")
	}
	return dst, nil
}
