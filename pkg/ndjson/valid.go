package ndjson

// Validate returns nil when j is one valid JSON value (RFC 8259) with
// nothing after it but whitespace, else a *SyntaxError saying what is
// wrong and where (byte offsets count from 1). The byte scanner
// (CompactObject, Members) checks structure only, leaving tokens such as
// `tru` or `01` to whoever reads the values; Validate checks every token,
// for callers that pass lines on without a reader that would (convert).
func Validate(j []byte) error {
	v := validator{j: j}
	v.space()
	if err := v.value(0); err != nil {
		return err
	}
	v.space()
	if v.i != len(v.j) {
		return malformed("text after the value at byte %d", v.i+1)
	}
	return nil
}

// maxDepth bounds nesting, as PostgreSQL's jsonb does (a deeper line is
// refused there too); it also bounds Validate's recursion.
const maxDepth = 10000

type validator struct {
	j []byte
	i int
}

func (v *validator) space() {
	for v.i < len(v.j) && isSpace(v.j[v.i]) {
		v.i++
	}
}

func (v *validator) value(depth int) error {
	if v.i >= len(v.j) {
		return malformed("missing value")
	}
	switch c := v.j[v.i]; {
	case c == '{':
		return v.object(depth + 1)
	case c == '[':
		return v.array(depth + 1)
	case c == '"':
		return v.string()
	case c == '-' || '0' <= c && c <= '9':
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return v.badToken()
}

// badToken reports the token at v.i (up to the next delimiter), cut short.
func (v *validator) badToken() error {
	end := v.i
	for end < len(v.j) {
		c := v.j[end]
		if c == ',' || c == '}' || c == ']' || c == ':' || isSpace(c) {
			break
		}
		end++
	}
	if end == v.i {
		return malformed("missing value at byte %d", v.i+1)
	}
	return malformed("bad token %q at byte %d", Clip(string(v.j[v.i:end])), v.i+1)
}

func (v *validator) literal(word string) error {
	if end := v.i + len(word); end <= len(v.j) && string(v.j[v.i:end]) == word && (end == len(v.j) || !isWordByte(v.j[end])) {
		v.i = end
		return nil
	}
	return v.badToken()
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '+' || c == '-'
}

func (v *validator) number() error {
	start := v.i
	digits := func() int {
		n := 0
		for v.i < len(v.j) && '0' <= v.j[v.i] && v.j[v.i] <= '9' {
			v.i++
			n++
		}
		return n
	}
	if v.j[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i < len(v.j) && v.j[v.i] == '0':
		v.i++
	case digits() == 0:
		v.i = start
		return v.badToken()
	}
	if v.i < len(v.j) && v.j[v.i] == '.' {
		v.i++
		if digits() == 0 {
			v.i = start
			return v.badToken()
		}
	}
	if v.i < len(v.j) && (v.j[v.i] == 'e' || v.j[v.i] == 'E') {
		v.i++
		if v.i < len(v.j) && (v.j[v.i] == '+' || v.j[v.i] == '-') {
			v.i++
		}
		if digits() == 0 {
			v.i = start
			return v.badToken()
		}
	}
	if v.i < len(v.j) && isWordByte(v.j[v.i]) {
		v.i = start
		return v.badToken() // 01, 1.5.2, 12abc
	}
	return nil
}

func (v *validator) string() error {
	v.i++ // the opening quote
	j := v.j
	for v.i < len(j) {
		// Plain bytes first, in a tight loop: most of any line.
		i := v.i
		for i < len(j) && !stringSpecial[j[i]] {
			i++
		}
		if v.i = i; i == len(j) {
			break
		}
		c := j[i]
		switch {
		case c == '"':
			v.i++
			return nil
		case c < 0x20:
			return malformed("a control character (U+%04X) in a string at byte %d: it must be escaped", c, v.i+1)
		case c == '\\':
			if v.i+1 >= len(v.j) {
				return malformed("unterminated string")
			}
			switch v.j[v.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i += 2
			case 'u':
				if v.i+6 > len(v.j) || !isHex(v.j[v.i+2]) || !isHex(v.j[v.i+3]) || !isHex(v.j[v.i+4]) || !isHex(v.j[v.i+5]) {
					return malformed("bad \\u escape in a string at byte %d", v.i+1)
				}
				v.i += 6
			default:
				return malformed("bad escape %q in a string at byte %d", v.j[v.i:v.i+2], v.i+1)
			}
		default:
			v.i++
		}
	}
	return malformed("unterminated string")
}

// stringSpecial marks the bytes that end a run of plain string content.
var stringSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (v *validator) object(depth int) error {
	if depth > maxDepth {
		return malformed("nested deeper than %d", maxDepth)
	}
	v.i++ // {
	v.space()
	if v.i < len(v.j) && v.j[v.i] == '}' {
		v.i++
		return nil
	}
	for {
		if v.i >= len(v.j) {
			return malformed("unterminated object")
		}
		if v.j[v.i] != '"' {
			return malformed("expected a key at byte %d", v.i+1)
		}
		if err := v.string(); err != nil {
			return err
		}
		v.space()
		if v.i >= len(v.j) || v.j[v.i] != ':' {
			return malformed("expected ':' at byte %d", v.i+1)
		}
		v.i++
		v.space()
		if err := v.value(depth); err != nil {
			return err
		}
		v.space()
		if v.i >= len(v.j) {
			return malformed("unterminated object")
		}
		switch v.j[v.i] {
		case ',':
			v.i++
			v.space()
		case '}':
			v.i++
			return nil
		default:
			return malformed("expected ',' or '}' at byte %d", v.i+1)
		}
	}
}

func (v *validator) array(depth int) error {
	if depth > maxDepth {
		return malformed("nested deeper than %d", maxDepth)
	}
	v.i++ // [
	v.space()
	if v.i < len(v.j) && v.j[v.i] == ']' {
		v.i++
		return nil
	}
	for {
		if err := v.value(depth); err != nil {
			return err
		}
		v.space()
		if v.i >= len(v.j) {
			return malformed("unterminated array")
		}
		switch v.j[v.i] {
		case ',':
			v.i++
			v.space()
		case ']':
			v.i++
			return nil
		default:
			return malformed("expected ',' or ']' at byte %d", v.i+1)
		}
	}
}
