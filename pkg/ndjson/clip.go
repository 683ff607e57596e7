package ndjson

import (
	"strings"
	"unicode/utf8"
)

// MaxQuoted is how many bytes of a value quoted in a message are kept
// (Clip, ClipQuoted): a message names a bad token, it does not copy it. A
// 5 MB token in a server's "Token ... is invalid" would otherwise go whole
// into stderr, state files and error files, patient data with it.
const MaxQuoted = 200

// maxMessage bounds a whole message after ClipQuoted, for a long value
// that is not between quotes (or holds quotes of its own).
const maxMessage = 2000

// Clip returns s cut to MaxQuoted bytes (at a character boundary), with
// "…" and the length when it was cut; a value in double quotes keeps its
// closing quote.
func Clip(s string) string {
	if len(s) <= MaxQuoted+clipSlack {
		return s
	}
	c := cut(s, MaxQuoted) + "…(" + FormatSize(int64(len(s))) + ")"
	if len(s) > 1 && s[0] == '"' && s[len(s)-1] == '"' {
		c += `"`
	}
	return c
}

// clipSlack lets what Clip made pass Clip again unchanged.
const clipSlack = 32

// ClipQuoted cuts every "double-quoted" span of msg longer than MaxQuoted
// bytes, and then the whole message to a couple of kilobytes.
func ClipQuoted(msg string) string {
	if len(msg) <= MaxQuoted+clipSlack {
		return msg
	}
	var b strings.Builder
	rest := msg
	for {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i+1])
		rest = rest[i+1:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			b.WriteString(Clip(rest))
			break
		}
		b.WriteString(Clip(rest[:j]))
		b.WriteByte('"')
		rest = rest[j+1:]
	}
	s := b.String()
	if len(s) > maxMessage {
		s = cut(s, maxMessage) + "…"
	}
	return s
}

// cut returns the first n bytes of s at most, not splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
