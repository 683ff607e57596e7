package ndjson

import "bytes"

// CompactJSONB is CompactObject for the text PostgreSQL prints for a jsonb
// object (jsonb_out), the hot path of every dump. That text is canonical:
// outside strings there is exactly one space after each ',' and ':' and no
// other whitespace, and strings are escaped by PostgreSQL, so the general
// scanner's checks are not needed: the spaces are dropped while strings
// are copied whole. Whenever src is not of that shape (not an object, other
// whitespace, a top-level key with a backslash, text after the object) it
// hands over to CompactObject, so its result is always exactly
// CompactObject's, errors included.
//
// Unlike CompactObject, dst must not overlap src.
func CompactJSONB(dst, src []byte, keys []string, spans []Span) ([]byte, error) {
	start := len(dst)
	general := func() ([]byte, error) { return CompactObject(dst[:start], src, keys, spans) }
	n := len(src)
	if n < 2 || src[0] != '{' {
		return general()
	}
	for k := range spans {
		spans[k] = Span{Start: -1, End: -1}
	}
	// src[run:i] is copied text not yet appended: it goes to dst in one
	// append at each dropped space and at the end, so the position in the
	// result of src[i] is len(dst)+i-run.
	run := 0
	depth := 1
	expectKey := true // at depth 1, the next string is a member's key
	cur := -1         // index in keys of the member being copied, or -1
	i := 1
	for i < n {
		switch src[i] {
		case '"':
			// The closing quote: the next '"' not escaped by an odd run of
			// backslashes.
			j := i + 1
			for {
				k := bytes.IndexByte(src[j:], '"')
				if k < 0 {
					return general()
				}
				q := j + k
				if src[q-1] != '\\' {
					j = q
					break
				}
				bs := 1
				for p := q - 2; p > i && src[p] == '\\'; p-- {
					bs++
				}
				if bs%2 == 0 {
					j = q
					break
				}
				j = q + 1
			}
			if expectKey {
				expectKey = false
				name := src[i+1 : j]
				if bytes.IndexByte(name, '\\') >= 0 {
					return general()
				}
				for k, key := range keys {
					if len(name) == len(key) && string(name) == key {
						if spans[k].Found() {
							return general()
						}
						spans[k].Start = len(dst) + i - run
						cur = k
						break
					}
				}
			}
			i = j + 1
			// The usual next bytes, taken here rather than one by one:
			// `": "` after a key, `", "` between members of a nested object
			// or elements.
			if i+1 < n && src[i+1] == ' ' {
				if c := src[i]; c == ':' || (c == ',' && depth > 1) {
					dst = append(dst, src[run:i+1]...)
					run = i + 2
					i += 2
				}
			}
			continue
		case ' ':
			// Only after ',' or ':'.
			if p := src[i-1]; p != ',' && p != ':' {
				return general()
			}
			dst = append(dst, src[run:i]...)
			run = i + 1
		case '\n', '\t', '\r':
			return general()
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if i != n-1 {
					return general()
				}
				if cur >= 0 {
					spans[cur].End = len(dst) + i - run
				}
				return append(dst, src[run:]...), nil
			}
		case ',':
			if depth == 1 {
				if cur >= 0 {
					spans[cur].End = len(dst) + i - run
					cur = -1
				}
				expectKey = true
			}
		}
		i++
	}
	return general()
}
