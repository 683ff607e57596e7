package ndjson

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Unquote returns the text of the JSON string literal s (quotes included).
// Without escapes it is a subslice of s; ok is false when s is not a string.
func Unquote(s []byte) (text []byte, ok bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return nil, false
	}
	inner := s[1 : len(s)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var str string
	if err := json.Unmarshal(s, &str); err != nil {
		return nil, false
	}
	return []byte(str), true
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
		return fmt.Errorf("%w: not an array", ErrMalformed)
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
			return fmt.Errorf("%w: unterminated array", ErrMalformed)
		}
		switch arr[i] {
		case ',':
			i++
		case ']':
			return nil
		default:
			return fmt.Errorf("%w: expected ',' or ']'", ErrMalformed)
		}
	}
}

// AppendStripNulls appends the compact JSON value v with every object
// member whose value is null removed, at any depth. Array elements that are
// null stay: only keys are stripped.
func AppendStripNulls(dst, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return dst, fmt.Errorf("%w: missing value", ErrMalformed)
	}
	if !bytes.Contains(v, []byte("null")) {
		return append(dst, v...), nil // nothing to strip: the common case
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
			dst, err = AppendStripNulls(dst, value)
			return err == nil
		})
		if merr != nil {
			return dst, merr
		}
		return append(dst, '}'), err
	case '[':
		{
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
				dst, err = AppendStripNulls(dst, value)
			})
			if eerr != nil {
				return dst, eerr
			}
			return append(dst, ']'), err
		}
	}
	return append(dst, v...), nil
}

// Member is one member of a JSON object: Key is the raw text between the
// key's quotes, Value the raw value.
type Member struct{ Key, Value []byte }

// SplitMembers appends the members of the compact JSON object obj to dst,
// in order. It is Members without a callback, for hot paths that need to
// look at all members before writing any.
func SplitMembers(dst []Member, obj []byte) ([]Member, error) {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return dst, fmt.Errorf("%w: not an object", ErrMalformed)
	}
	i := 1
	if obj[i] == '}' {
		return dst, nil
	}
	for {
		if obj[i] != '"' {
			return dst, fmt.Errorf("%w: expected a key", ErrMalformed)
		}
		kend, err := stringEnd(obj, i)
		if err != nil {
			return dst, err
		}
		if kend >= len(obj) || obj[kend] != ':' {
			return dst, fmt.Errorf("%w: expected ':'", ErrMalformed)
		}
		vend, err := skipValue(obj, kend+1)
		if err != nil {
			return dst, err
		}
		dst = append(dst, Member{Key: obj[i+1 : kend-1], Value: obj[kend+1 : vend]})
		if vend >= len(obj) {
			return dst, fmt.Errorf("%w: unterminated object", ErrMalformed)
		}
		switch obj[vend] {
		case ',':
			i = vend + 1
		case '}':
			if vend != len(obj)-1 {
				return dst, fmt.Errorf("%w: text after the object", ErrMalformed)
			}
			return dst, nil
		default:
			return dst, fmt.Errorf("%w: expected ',' or '}'", ErrMalformed)
		}
	}
}

// SplitElements appends the elements of the compact JSON array arr to dst.
func SplitElements(dst [][]byte, arr []byte) ([][]byte, error) {
	if len(arr) < 2 || arr[0] != '[' || arr[len(arr)-1] != ']' {
		return dst, fmt.Errorf("%w: not an array", ErrMalformed)
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
			return dst, fmt.Errorf("%w: unterminated array", ErrMalformed)
		}
		switch arr[end] {
		case ',':
			i = end + 1
		case ']':
			if end != len(arr)-1 {
				return dst, fmt.Errorf("%w: text after the array", ErrMalformed)
			}
			return dst, nil
		default:
			return dst, fmt.Errorf("%w: expected ',' or ']'", ErrMalformed)
		}
	}
}
