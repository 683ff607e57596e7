package progress_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/fhirbulk/fhirbulk/pkg/progress"
)

func TestWording(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Count(0), "0"},
		{Count(999), "999"},
		{Count(1000), "1,000"},
		{Count(1011108), "1,011,108"},
		{Count(-1234567), "-1,234,567"},
		{Plural(1, "rows"), "1 row"},
		{Plural(13, "rows"), "13 rows"},
		{Plural(412000, "lines"), "412,000 lines"},
		{Bytes(0), "0 B"},
		{Bytes(950), "950 B"},
		{Bytes(4400), "4.4 kB"},
		{Bytes(43870), "44 kB"},
		{Bytes(999499), "999 kB"},
		{Bytes(999500), "1.0 MB"},
		{Bytes(310_000_000), "310 MB"},
		{Bytes(810_542_882), "811 MB"},
		{Bytes(1_834_606_030), "1.8 GB"},
		{BytesOf(310_000_000, 810_000_000), "310 MB/810 MB"},
		{ByteRate(95e6), "95 MB/s"},
		{PerSecond(52312, "rows"), "52,300 rows/s"},
		{PerSecond(123.4, "rows"), "123 rows/s"},
		{PerSecond(4.5, "lines"), "4.5 lines/s"},
		{Percent(38, 100), "38%"},
		{Percent(999, 1000), "99%"},
		{Percent(1200, 1000), "100%"},
		{Percent(1, 0), ""},
		{Clock(0), "0s"},
		{Clock(4900 * time.Millisecond), "4s"},
		{Clock(65 * time.Second), "1m05s"},
		{Clock(2*time.Hour + 3*time.Minute), "2h03m"},
		{Took(23 * time.Millisecond), "23ms"},
		{Took(200 * time.Millisecond), "0.2s"},
		{Took(4500 * time.Millisecond), "4.5s"},
		{Took(42 * time.Second), "42s"},
		{Took(185 * time.Second), "3m05s"},
		{ETA(500e6, 95e6), "ETA 6s"},
		{ETA(1, 0), ""},
		{ETA(1e12, 1), ""},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestWidth(t *testing.T) {
	for s, w := range map[string]int{
		"":              0,
		"abc":           3,
		"日本語":           6,
		"e\u0301":       1, // e and a combining acute
		"Ünïcödé":       7,
		"🙂":             2,
		"…":             1,
		"a\u200bb":      2, // a zero-width space
		"ｆｕｌｌ":          8,
		`\x1b[31m`:      8,
		"tab\x09escape": 9,
	} {
		if got := Width(s); got != w {
			t.Errorf("Width(%q) = %d, want %d", s, got, w)
		}
	}
}

func TestFitShortenRows(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Fit("hello", 5), "hello"},
		{Fit("hello", 4), "hel…"},
		{Fit("hello", 1), "…"},
		{Fit("hello", 0), ""},
		{Fit("日本語です", 5), "日本…"},
		{Fit("日本語です", 6), "日本…"},
		{Shorten("/data/exports/Observation.ndjson.gz", 24), "…s/Observation.ndjson.gz"},
		{Shorten("short", 10), "short"},
		{Shorten("データ/日本語.ndjson", 12), "…本語.ndjson"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
		if Width(c.got) > Width(c.want) {
			t.Errorf("%q is too wide", c.got)
		}
	}
	for _, c := range []struct {
		s    string
		w    int
		rows int
	}{
		{"", 80, 1},
		{strings.Repeat("x", 80), 80, 1},
		{strings.Repeat("x", 81), 80, 2},
		{strings.Repeat("x", 160), 80, 2},
		{strings.Repeat("x", 161), 80, 3},
		{strings.Repeat("x", 79), 40, 2},
		{strings.Repeat("x", 39) + "日", 40, 2}, // the wide character does not straddle the edge
		{strings.Repeat("x", 38) + "日", 40, 1},
		{"abc", 0, 1},
	} {
		if got := Rows(c.s, c.w); got != c.rows {
			t.Errorf("Rows(%d cells, %d) = %d, want %d", Width(c.s), c.w, got, c.rows)
		}
	}
}

// Line drops the least useful figures first, and shortens the name to
// what fits.
func TestLine(t *testing.T) {
	fields := []Field{
		{"412,000 lines", 2}, {"310 MB/810 MB", 4}, {"38%", 1}, {"95 MB/s", 5}, {"ETA 5s", 3}, {"4s elapsed", 6},
	}
	for _, c := range []struct {
		w    int
		want string
	}{
		{200, "load Observation.ndjson.gz  412,000 lines  310 MB/810 MB  38%  95 MB/s  ETA 5s  4s elapsed"},
		{79, "load Observation.ndjson.gz  412,000 lines  310 MB/810 MB  38%  95 MB/s  ETA 5s"},
		{70, "load Observation.ndjson.gz  412,000 lines  310 MB/810 MB  38%  ETA 5s"},
		{60, "load Observation.ndjson.gz  412,000 lines  38%  ETA 5s"},
		{50, "load Observation.ndjson.gz  412,000 lines  38%"},
		{40, "load Observation.ndjson.gz  38%"},
		{30, "load …servation.ndjson.gz  38%"},
		{20, "load …ation.ndjson.…"},
	} {
		got := Line(c.w, "load ", "Observation.ndjson.gz", fields...)
		if got != c.want {
			t.Errorf("Line(%d) =\n%q, want\n%q", c.w, got, c.want)
		}
		if Width(got) > c.w {
			t.Errorf("Line(%d) is %d wide", c.w, Width(got))
		}
	}
	// A long name is shortened before a figure goes.
	long := "https://bucket.s3.amazonaws.com/exports/2026/Observation.ndjson.gz?…"
	if got, want := Line(79, "load ", long, fields[:3]...), "load …m/exports/2026/Observation.ndjson.gz?…  412,000 lines  310 MB/810 MB  38%"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got, want := Line(10, "", "", Field{"a", 0}, Field{"b", 1}), "a  b"; got != want {
		t.Errorf("no name: %q", got)
	}
}
