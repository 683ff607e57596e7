package dump

import (
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	for in, want := range map[string]string{
		"2024-01-31":                "2024-01-31T00:00:00Z",
		"2024-01-31T12:00:00Z":      "2024-01-31T12:00:00Z",
		"2024-01-31T12:00:00.5Z":    "2024-01-31T12:00:00.5Z",
		"2024-01-31T14:00:00+02:00": "2024-01-31T12:00:00Z",
	} {
		got, err := ParseSince(in)
		if err != nil || got.UTC().Format(time.RFC3339Nano) != want {
			t.Errorf("ParseSince(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-1-31", "2024-01-31 12:00", "2024-02-30", "1706702400", "2024-01-31T12:00:00"} {
		if _, err := ParseSince(bad); err == nil {
			t.Errorf("ParseSince(%q): no error", bad)
		}
	}
}
