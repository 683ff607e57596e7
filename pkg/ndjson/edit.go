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
