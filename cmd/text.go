package cmd

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable is text that came from outside (a server's error message, a
// URL, a path, an id from a state file) made safe to print for a person:
// control characters (an escape sequence would drive the terminal; a tab or
// a newline would break the table), the bytes of invalid UTF-8 and the
// bidirectional controls (which reorder what is shown) are written as Go
// escapes: \x1b, \xff, \u202e. Other Unicode, and a backslash, stay as
// they are.
func printable(s string) string {
	i := strings.IndexFunc(s, unprintable)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for rest := s[i:]; rest != ""; {
		r, n := utf8.DecodeRuneInString(rest)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, rest[0])
		case !unprintable(r) || r == utf8.RuneError: // U+FFFD itself is text
			b.WriteString(rest[:n])
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		rest = rest[n:]
	}
	return b.String()
}

func unprintable(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError
}
