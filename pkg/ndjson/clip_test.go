package ndjson

import (
	"strings"
	"testing"
)

func TestClipQuoted(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes: the cut must not split a character
	for _, tc := range []struct{ in, want string }{
		{`Token "tru" is invalid.`, `Token "tru" is invalid.`},
		{`Token "` + long + `" is invalid.`, `Token "` + strings.Repeat("é", 100) + `…(6000 bytes)" is invalid.`},
		{`a "` + long, `a "` + strings.Repeat("é", 100) + `…(6000 bytes)`},
		{`x "` + long + `" y "` + long + `"`, `x "` + strings.Repeat("é", 100) + `…(6000 bytes)" y "` + strings.Repeat("é", 100) + `…(6000 bytes)"`},
	} {
		got := ClipQuoted(tc.in)
		if got != tc.want {
			t.Errorf("ClipQuoted(%.40q…) = %q, want %q", tc.in, got, tc.want)
		}
		if again := ClipQuoted(got); again != got {
			t.Errorf("ClipQuoted is not idempotent: %q", again)
		}
	}
	// A long value outside quotes: the message is still bounded.
	if got := ClipQuoted(strings.Repeat("x", 10000)); len(got) > maxMessage+4 {
		t.Errorf("unquoted: %d bytes", len(got))
	}
	if got := Clip(`"` + strings.Repeat("1", 300) + `"`); got != `"`+strings.Repeat("1", 199)+`…(302 bytes)"` {
		t.Errorf("Clip = %q", got)
	}
}
