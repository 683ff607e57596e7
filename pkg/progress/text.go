package progress

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"
)

// Count is n with a comma between thousands: 1,011,108.
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Plural is n and the unit, the unit without its final s for one:
// "1 row", "13 rows", "1,011,108 lines".
func Plural(n int64, unit string) string {
	if n == 1 {
		unit = strings.TrimSuffix(unit, "s")
	}
	return Count(n) + " " + unit
}

var sizeUnits = []string{"kB", "MB", "GB", "TB", "PB", "EB"}

// Bytes is a size as people read it: SI units (as disks and networks are
// sold), at most three figures: 950 B, 4.4 kB, 44 kB, 310 MB, 1.2 GB.
func Bytes(n int64) string {
	if n < 1000 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n)/1000, 0
	for v >= 999.5 && i < len(sizeUnits)-1 {
		v /= 1000
		i++
	}
	if v < 9.95 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + sizeUnits[i]
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + sizeUnits[i]
}

// BytesOf is n of total: "310 MB/810 MB".
func BytesOf(n, total int64) string { return Bytes(n) + "/" + Bytes(total) }

// ByteRate is a byte rate: "95 MB/s".
func ByteRate(bytesPerSecond float64) string { return Bytes(int64(bytesPerSecond)) + "/s" }

// PerSecond is a rate of items, to three figures: "52,300 rows/s",
// "4.5 lines/s".
func PerSecond(perSecond float64, unit string) string {
	if perSecond < 10 {
		return strconv.FormatFloat(perSecond, 'f', 1, 64) + " " + unit + "/s"
	}
	digits := int(math.Floor(math.Log10(perSecond))) + 1
	scale := math.Pow(10, float64(max(digits-3, 0)))
	return Count(int64(math.Round(perSecond/scale)*scale)) + " " + unit + "/s"
}

// Percent is the share done, "38%": never 100% before the end (rounded down).
func Percent(n, total int64) string {
	if total <= 0 {
		return ""
	}
	p := min(max(n*100/total, 0), 100)
	return strconv.FormatInt(p, 10) + "%"
}

// Clock is a time in whole seconds, as a clock that ticks is read:
// "0s", "59s", "3m05s", "2h03m".
func Clock(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}

// Took is how long something took, for a summary: milliseconds under a
// tenth of a second ("23ms"), tenths of a second under ten seconds ("0.2s",
// "4.5s"), else as Clock ("42s", "3m05s").
func Took(d time.Duration) string {
	if d < 95*time.Millisecond {
		return strconv.FormatInt(int64(max(d, 0)/time.Millisecond), 10) + "ms"
	}
	if d < 9950*time.Millisecond {
		return strconv.FormatFloat(max(d, 0).Seconds(), 'f', 1, 64) + "s"
	}
	return Clock(d + time.Second/2)
}

// ETA is the time left at rate (per second) for the rest of work: "ETA 5s";
// empty when the rate says nothing (zero) or the wait is beyond a day.
func ETA(left, rate float64) string {
	if rate <= 0 || left < 0 {
		return ""
	}
	s := math.Ceil(left / rate)
	if s > 24*3600 {
		return ""
	}
	return "ETA " + Clock(time.Duration(s)*time.Second)
}

// RuneWidth is how many cells r takes on a terminal: 2 for East Asian wide
// and fullwidth characters, 0 for combining marks, format characters and
// controls, else 1.
func RuneWidth(r rune) int {
	switch {
	case r < 0x20 || (r >= 0x7f && r < 0xa0):
		return 0
	case r < 0x300:
		return 1
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		return 0
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// Width is how many cells s takes on a terminal (see RuneWidth).
func Width(s string) int {
	n := 0
	for _, r := range s {
		n += RuneWidth(r)
	}
	return n
}

// Fit is s cut to at most w cells, ending in "…" when cut.
func Fit(s string, w int) string {
	if Width(s) <= w {
		return s
	}
	if w <= 0 {
		return ""
	}
	n, i := 0, 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if n+RuneWidth(r) > w-1 {
			break
		}
		n += RuneWidth(r)
		i += size
	}
	return s[:i] + "…"
}

// Shorten is s cut to at most w cells by taking away its beginning, "…" in
// its place: the end of a path or URL (the file's name) says the most.
func Shorten(s string, w int) string {
	if Width(s) <= w {
		return s
	}
	if w <= 0 {
		return ""
	}
	n, i := 0, len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if n+RuneWidth(r) > w-1 {
			break
		}
		n += RuneWidth(r)
		i -= size
	}
	return "…" + s[i:]
}

// Rows is how many rows of a terminal width cells wide the line s takes:
// a line wraps when the next character does not fit (a wide one that
// would straddle the edge goes to the next row whole). A line that fills
// its last row exactly takes no more: the cursor waits at the edge.
func Rows(s string, w int) int {
	if w <= 0 {
		return 1
	}
	rows, col := 1, 0
	for _, r := range s {
		rw := RuneWidth(r)
		if col+rw > w {
			rows++
			col = 0
		}
		col += rw
	}
	return rows
}

// A Field is one figure of a status line. Fields are shown in order, two
// spaces apart; when the line is too wide, the field of the highest Drop
// goes first (0: never).
type Field struct {
	Text string
	Drop int
}

// minName is how short Line makes a name, at the most.
const minName = 16

// Line is head, name and the fields, at most w cells wide. When they do not
// fit, a long name (wider than two fifths of the line) is shortened from
// its beginning to that, then fields are dropped (highest Drop first), and
// when none is left to drop the name is shortened down to minName cells;
// what still does not fit is cut. head is never shortened.
func Line(w int, head, name string, fields ...Field) string {
	fs := make([]Field, 0, len(fields))
	for _, f := range fields {
		if f.Text != "" {
			fs = append(fs, f)
		}
	}
	nw := Width(name)
	keep := min(nw, max(minName, w*2/5))
	for {
		rest := Width(head)
		for _, f := range fs {
			rest += Width(f.Text)
		}
		if len(fs) > 0 && head+name != "" {
			rest += 2 * len(fs)
		} else if len(fs) > 0 {
			rest += 2 * (len(fs) - 1)
		}
		room := w - rest
		drop := -1
		for i, f := range fs {
			if f.Drop > 0 && (drop < 0 || f.Drop >= fs[drop].Drop) {
				drop = i
			}
		}
		if room >= keep || drop < 0 {
			return Fit(join(head+Shorten(name, max(room, min(nw, minName))), fs), w)
		}
		fs = append(fs[:drop], fs[drop+1:]...)
	}
}

func join(label string, fs []Field) string {
	var b strings.Builder
	b.WriteString(label)
	for _, f := range fs {
		if b.Len() > 0 {
			b.WriteString("  ")
		}
		b.WriteString(f.Text)
	}
	return b.String()
}
