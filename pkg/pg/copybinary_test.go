package pg

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// binaryStream builds a COPY binary stream of rows (nil fields are NULL).
func binaryStream(rows [][][]byte) []byte {
	b := append([]byte{}, binarySignature...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 4) // a header extension, to be skipped
	b = append(b, "ext!"...)
	for _, r := range rows {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		for _, f := range r {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

func TestBinaryRowsAnyChunking(t *testing.T) {
	rows := [][][]byte{
		{[]byte("a"), nil, []byte("")},
		{[]byte(strings.Repeat("x", 300)), []byte{1, 2, 3}, nil},
		{},
	}
	stream := binaryStream(rows)
	want := "a|NULL|;" + strings.Repeat("x", 300) + "|\x01\x02\x03|NULL;;"
	for _, chunk := range []int{1, 2, 3, 7, 19, 100, len(stream)} {
		var got strings.Builder
		br := &BinaryRows{Row: func(fields [][]byte) error {
			for i, f := range fields {
				if i > 0 {
					got.WriteByte('|')
				}
				if f == nil {
					got.WriteString("NULL")
				} else {
					got.Write(f)
				}
			}
			got.WriteByte(';')
			return nil
		}}
		for i := 0; i < len(stream); i += chunk {
			p := append([]byte{}, stream[i:min(i+chunk, len(stream))]...)
			if _, err := br.Write(p); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			clear(p) // rows must not keep references into a written slice
		}
		if err := br.Close(); err != nil {
			t.Fatalf("chunk %d: Close: %v", chunk, err)
		}
		if got.String() != want {
			t.Errorf("chunk %d: rows %q, want %q", chunk, got.String(), want)
		}
	}
}

func TestBinaryRowsErrors(t *testing.T) {
	full := binaryStream([][][]byte{{[]byte("abc")}})
	truncated := &BinaryRows{Row: func([][]byte) error { return nil }}
	truncated.Write(full[:len(full)-4])
	if err := truncated.Close(); err == nil {
		t.Error("a stream without its trailer: Close gave no error")
	}
	text := &BinaryRows{Row: func([][]byte) error { return nil }}
	if _, err := text.Write([]byte("1\tabc\n2\tdef\n3\tghi\n4\tjkl\n")); err == nil {
		t.Error("a text-format stream: no error")
	}
	failing := &BinaryRows{Row: func([][]byte) error { return fmt.Errorf("stop") }}
	if _, err := failing.Write(full); err == nil || err.Error() != "stop" {
		t.Errorf("the row function's error must come back, got %v", err)
	}
}

func TestAppendTimestamptz(t *testing.T) {
	enc := func(us int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(us)) }
	for us, want := range map[int64]string{
		0:                       "2000-01-01T00:00:00Z",
		1:                       "2000-01-01T00:00:00.000001Z",
		-1:                      "1999-12-31T23:59:59.999999Z",
		757_400_706_789_000:     "2024-01-01T05:05:06.789Z",
		1<<63 - 1:               "infinity",
		-1 << 63:                "-infinity",
		-63_082_281_600_000_000: "0001-01-01T00:00:00Z",
	} {
		got, err := AppendTimestamptz(nil, enc(us))
		if err != nil || string(got) != want {
			t.Errorf("AppendTimestamptz(%d) = %s, %v; want %s", us, got, err, want)
		}
	}
	if _, err := AppendTimestamptz(nil, []byte{1, 2}); err == nil {
		t.Error("a short field: no error")
	}
}

// appendMicros writes what time's AppendFormat writes, at every edge of
// its fast path and on a million random instants.
func TestAppendMicrosIsAppendFormat(t *testing.T) {
	check := func(us int64) {
		want := time.UnixMicro(us).UTC().AppendFormat(nil, rfc3339Micros)
		if got := appendMicros(nil, us); string(got) != string(want) {
			t.Fatalf("appendMicros(%d) = %s; want %s", us, got, want)
		}
	}
	const day = 86400 * 1000000
	for _, edge := range []int64{0, minFastMicros, endFastMicros, -pgEpochMicros,
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC).UnixMicro(),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), time.Date(1600, 2, 29, 0, 0, 0, 0, time.UTC).UnixMicro()} {
		for d := int64(-3); d <= 3; d++ {
			for _, delta := range []int64{-1000001, -1, 0, 1, 10, 999999, 1000000, 123456} {
				check(edge + d*day + delta)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		check(minFastMicros - 1e12 + r.Int64N(endFastMicros-minFastMicros+2e12))
	}
}

func BenchmarkAppendTimestamptz(b *testing.B) {
	f := binary.BigEndian.AppendUint64(nil, uint64(757_400_706_789_000))
	var dst []byte
	for b.Loop() {
		dst, _ = AppendTimestamptz(dst[:0], f)
	}
}
