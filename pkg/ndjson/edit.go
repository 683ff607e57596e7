package ndjson

import (
	"bytes"
)

// Unquote returns the text of the JSON string literal s (quotes included).
// Without escapes it is a subslice of s; ok is false when s is not a
// string, or one that cannot be decoded exactly (a lone surrogate such as
// "\ud800" is refused, never turned into U+FFFD: see KeyText).
func Unquote(s []byte) (text []byte, ok bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return nil, false
	}
	return KeyText(s[1 : len(s)-1])
}

// Elements calls fn for each element of the JSON array arr, in order.
func Elements(arr []byte, fn func(value []byte)) error {
	i := 0
	skip := func() {
		for i < len(arr) && isSpace(arr[i]) {
			i++
		}
	}
	skip()
	if i == len(arr) || arr[i] != '[' {
		return malformed("not an array")
	}
	i++
	skip()
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		skip()
		end, err := skipValue(arr, i)
		if err != nil {
			return err
		}
		fn(arr[i:end])
		i = end
		skip()
		if i >= len(arr) {
			return malformed("unterminated array")
		}
		switch arr[i] {
		case ',':
			i++
		case ']':
			return nil
		default:
			return malformed("expected ',' or ']'")
		}
	}
}

// AppendStripNulls appends the compact JSON value v with every object
// member whose value is null removed, at any depth. Array elements that are
// null stay: only keys are stripped. Everything else is copied as it is
// (whitespace too, if v has any, but for what a dropped member held).
//
// It is one pass over v whatever its depth (open containers are kept on a
// stack of their own, not on the call stack), and v is copied in runs
// between the members it drops. A value without "null" in it anywhere (the
// common case) is copied whole after one search for it.
//
// dst may be v[:0]: it only drops bytes, never writing ahead of what it has
// read, so a long value is stripped in place.
func AppendStripNulls(dst, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return dst, malformed("missing value")
	}
	if (v[0] != '{' && v[0] != '[') || !bytes.Contains(v, []byte("null")) {
		return append(dst, v...), nil
	}
	// open holds one byte per open container: '[' an array, '{' an object
	// none of whose members has been kept yet, '}' one that has kept one.
	var stackBuf [64]byte
	open := stackBuf[:0]
	from := 0 // v[from:] is not yet copied to dst
	i := 0
	// At the top of the loop a value starts at i (an array element or a
	// member's value), or, when inObject, a member's key does.
	inObject := false
	for {
		if inObject {
			inObject = false
			key := i
			if i >= len(v) || v[i] != '"' {
				return dst, malformed("expected a key")
			}
			kend, err := stringEnd(v, i)
			if err != nil {
				return dst, err
			}
			i = skipSpaces(v, kend)
			if i >= len(v) || v[i] != ':' {
				return dst, malformed("expected ':'")
			}
			i = skipSpaces(v, i+1)
			top := len(open) - 1
			if !isNull(v, i) {
				open[top] = '}'
				continue
			}
			i += len("null")
			// Drop the member with the comma that joins it to a member
			// kept before it; when there is none, with the comma after it.
			if open[top] == '}' {
				comma := bytes.LastIndexByte(v[:key], ',')
				dst = append(dst, v[from:comma]...)
				from = i
			} else {
				dst = append(dst, v[from:key]...)
				if j := skipSpaces(v, i); j < len(v) && v[j] == ',' {
					i = skipSpaces(v, j+1)
					from = i
					inObject = true
					continue
				}
				from = i
			}
		} else {
			if i >= len(v) {
				return dst, malformed("missing value")
			}
			switch c := v[i]; c {
			case '{', '[':
				open = append(open, c)
				i = skipSpaces(v, i+1)
				if i < len(v) && v[i] == c+2 { // '}' or ']'
					i++
					open = open[:len(open)-1]
					break
				}
				inObject = c == '{'
				continue
			case '"':
				end, err := stringEnd(v, i)
				if err != nil {
					return dst, err
				}
				i = end
			default:
				j := scalarEnd(v, i)
				if j == i {
					return dst, malformed("missing value")
				}
				i = j
			}
		}
		// A value ended at i: what follows is up to the container it is in.
		for {
			if len(open) == 0 {
				if skipSpaces(v, i) != len(v) {
					return dst, malformed("text after the value")
				}
				return append(dst, v[from:]...), nil
			}
			i = skipSpaces(v, i)
			if i >= len(v) {
				return dst, malformed("unterminated value")
			}
			top := open[len(open)-1]
			c := v[i]
			if c == ',' {
				i = skipSpaces(v, i+1)
				inObject = top != '['
				break
			}
			if (c == ']') != (top == '[') || (c != ']' && c != '}') {
				return dst, malformed("expected ',' or the end of the container")
			}
			i++
			open = open[:len(open)-1]
		}
	}
}

// isNull reports whether the literal null is at v[i].
func isNull(v []byte, i int) bool {
	return len(v)-i >= 4 && string(v[i:i+4]) == "null" && scalarEnd(v, i+4) == i+4
}

// scalarEnd returns the index just past the number or literal at v[i]: at
// the next delimiter, as skipValue has it.
func scalarEnd(v []byte, i int) int {
	for i < len(v) {
		switch v[i] {
		case ',', '}', ']', ' ', '\n', '\t', '\r':
			return i
		}
		i++
	}
	return i
}

func skipSpaces(v []byte, i int) int {
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	return i
}

// Member is one member of a JSON object: Key is the raw text between the
// key's quotes (escapes as they are: KeyText decodes it), Value the raw
// value.
type Member struct{ Key, Value []byte }

// SplitMembers appends the members of the compact JSON object obj to dst,
// in order. It is Members without a callback, for hot paths that need to
// look at all members before writing any.
func SplitMembers(dst []Member, obj []byte) ([]Member, error) {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return dst, malformed("not an object")
	}
	i := 1
	if obj[i] == '}' {
		return dst, nil
	}
	for {
		if obj[i] != '"' {
			return dst, malformed("expected a key")
		}
		kend, err := stringEnd(obj, i)
		if err != nil {
			return dst, err
		}
		if kend >= len(obj) || obj[kend] != ':' {
			return dst, malformed("expected ':'")
		}
		vend, err := skipValue(obj, kend+1)
		if err != nil {
			return dst, err
		}
		dst = append(dst, Member{Key: obj[i+1 : kend-1], Value: obj[kend+1 : vend]})
		if vend >= len(obj) {
			return dst, malformed("unterminated object")
		}
		switch obj[vend] {
		case ',':
			i = vend + 1
		case '}':
			if vend != len(obj)-1 {
				return dst, malformed("text after the object")
			}
			return dst, nil
		default:
			return dst, malformed("expected ',' or '}'")
		}
	}
}

// SplitElements appends the elements of the compact JSON array arr to dst.
func SplitElements(dst [][]byte, arr []byte) ([][]byte, error) {
	if len(arr) < 2 || arr[0] != '[' || arr[len(arr)-1] != ']' {
		return dst, malformed("not an array")
	}
	i := 1
	if arr[i] == ']' {
		return dst, nil
	}
	for {
		end, err := skipValue(arr, i)
		if err != nil {
			return dst, err
		}
		dst = append(dst, arr[i:end])
		if end >= len(arr) {
			return dst, malformed("unterminated array")
		}
		switch arr[end] {
		case ',':
			i = end + 1
		case ']':
			if end != len(arr)-1 {
				return dst, malformed("text after the array")
			}
			return dst, nil
		default:
			return dst, malformed("expected ',' or ']'")
		}
	}
}
