package pg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// binarySignature opens every COPY ... (FORMAT binary) stream.
var binarySignature = []byte("PGCOPY\n\xff\r\n\x00")

// BinaryRows is an io.Writer that takes a COPY ... TO STDOUT (FORMAT binary)
// stream, in chunks of any size, and calls Row once per tuple with its fields
// (nil for NULL). The field slices are only valid during the call.
//
// pgx hands the stream over one CopyData message at a time and PostgreSQL
// sends one row per message, so the common case parses straight from the
// caller's slice without copying; a row split across writes is reassembled
// in a small carry-over buffer.
type BinaryRows struct {
	Row func(fields [][]byte) error

	carry   []byte
	fields  [][]byte
	started bool // header seen
	ended   bool // trailer seen
}

// Write implements io.Writer.
func (b *BinaryRows) Write(p []byte) (int, error) {
	data := p
	if len(b.carry) > 0 {
		b.carry = append(b.carry, p...)
		data = b.carry
	}
	used, err := b.parse(data)
	if err != nil {
		return 0, err
	}
	rest := data[used:]
	if len(b.carry) > 0 {
		b.carry = b.carry[:copy(b.carry, rest)]
	} else {
		b.carry = append(b.carry[:0], rest...)
	}
	return len(p), nil
}

// Close reports a stream that ended before its trailer.
func (b *BinaryRows) Close() error {
	if !b.ended || len(b.carry) > 0 {
		return errors.New("COPY stream ended early")
	}
	return nil
}

// parse consumes as many whole items (header, tuples, trailer) of data as it
// can and returns how many bytes it used.
func (b *BinaryRows) parse(data []byte) (int, error) {
	pos := 0
	if !b.started {
		const fixed = 11 + 4 + 4 // signature, flags, header extension length
		if len(data) < fixed {
			return 0, nil
		}
		if !bytes.Equal(data[:11], binarySignature) {
			return 0, errors.New("COPY stream is not in binary format")
		}
		ext := int(binary.BigEndian.Uint32(data[15:19]))
		if len(data) < fixed+ext {
			return 0, nil
		}
		pos = fixed + ext
		b.started = true
	}
	for pos < len(data) {
		if b.ended {
			return 0, errors.New("COPY stream has data after its trailer")
		}
		if len(data)-pos < 2 {
			return pos, nil
		}
		n := int16(binary.BigEndian.Uint16(data[pos:]))
		if n == -1 {
			b.ended = true
			pos += 2
			continue
		}
		if n < 0 {
			return 0, fmt.Errorf("COPY stream has a bad field count %d", n)
		}
		fields := b.fields[:0]
		p := pos + 2
		complete := true
		for f := 0; f < int(n); f++ {
			if len(data)-p < 4 {
				complete = false
				break
			}
			l := int32(binary.BigEndian.Uint32(data[p:]))
			p += 4
			if l == -1 {
				fields = append(fields, nil)
				continue
			}
			if l < 0 {
				return 0, fmt.Errorf("COPY stream has a bad field length %d", l)
			}
			if len(data)-p < int(l) {
				complete = false
				break
			}
			fields = append(fields, data[p:p+int(l):p+int(l)])
			p += int(l)
		}
		b.fields = fields
		if !complete {
			return pos, nil
		}
		if err := b.Row(fields); err != nil {
			return 0, err
		}
		pos = p
	}
	return pos, nil
}

// Int8 decodes a binary bigint field.
func Int8(f []byte) (int64, error) {
	if len(f) != 8 {
		return 0, fmt.Errorf("bigint field has %d bytes", len(f))
	}
	return int64(binary.BigEndian.Uint64(f)), nil
}

// pgEpochMicros is 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpochMicros = 946684800 * 1000000

// AppendTimestamptz appends a binary timestamptz field as RFC 3339 in UTC with
// microseconds (trailing zeros dropped), or "infinity"/"-infinity".
func AppendTimestamptz(dst, f []byte) ([]byte, error) {
	us, err := Int8(f)
	if err != nil {
		return dst, fmt.Errorf("timestamptz: %w", err)
	}
	switch us {
	case math.MaxInt64:
		return append(dst, "infinity"...), nil
	case math.MinInt64:
		return append(dst, "-infinity"...), nil
	}
	return appendMicros(dst, us+pgEpochMicros), nil
}

// rfc3339Micros is AppendTimestamptz's layout.
const rfc3339Micros = "2006-01-02T15:04:05.999999Z07:00"

// Unix microseconds of 0001-01-01 and of 10000-01-01: the years written
// with four digits.
const (
	minFastMicros = -62135596800 * 1000000
	endFastMicros = 253402300800 * 1000000
)

// appendMicros appends Unix microseconds us as time.AppendFormat would
// with rfc3339Micros in UTC, without its cost (two timestamps a row are a
// sixth of a dump's CPU time that way): the civil date from the day number
// (Hinnant's civil_from_days), the fraction without trailing zeros.
func appendMicros(dst []byte, us int64) []byte {
	if us < minFastMicros || us >= endFastMicros {
		return time.UnixMicro(us).UTC().AppendFormat(dst, rfc3339Micros)
	}
	const microsPerDay = 86400 * 1000000
	days := us / microsPerDay
	rem := us % microsPerDay
	if rem < 0 {
		days--
		rem += microsPerDay
	}
	z := days + 719468 // days since 0000-03-01
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	secs := rem / 1000000
	frac := rem % 1000000
	dst = appendDigits(dst, y, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, m, 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, secs/3600, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, secs/60%60, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, secs%60, 2)
	if frac != 0 {
		n := 6
		for frac%10 == 0 {
			frac /= 10
			n--
		}
		dst = append(dst, '.')
		dst = appendDigits(dst, frac, n)
	}
	return append(dst, 'Z')
}

// appendDigits appends v (0 ≤ v < 10ⁿ, n ≤ 6) in n digits, zero-padded.
func appendDigits(dst []byte, v int64, n int) []byte {
	start := len(dst)
	dst = append(dst, "000000"[:n]...)
	for i := start + n - 1; v > 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// JSONB returns the JSON text of a binary jsonb field (its version byte removed).
func JSONB(f []byte) ([]byte, error) {
	if len(f) == 0 || f[0] != 1 {
		return nil, errors.New("jsonb field has an unknown binary version")
	}
	return f[1:], nil
}

// The encoding side of binary COPY FROM STDIN: a header, tuples of fields,
// a trailer. Each Append function appends to dst and returns it.

// AppendCopyHeader appends the binary COPY header.
func AppendCopyHeader(dst []byte) []byte {
	dst = append(dst, "PGCOPY\n\xff\r\n\x00"...)
	dst = binary.BigEndian.AppendUint32(dst, 0)  // flags
	return binary.BigEndian.AppendUint32(dst, 0) // header extension length
}

// AppendCopyTrailer appends the end-of-data marker.
func AppendCopyTrailer(dst []byte) []byte { return binary.BigEndian.AppendUint16(dst, 0xffff) }

// AppendTuple starts a tuple of n fields.
func AppendTuple(dst []byte, n int) []byte { return binary.BigEndian.AppendUint16(dst, uint16(n)) }

// AppendBytes appends a field of text, bytea or an enum (whose binary form
// is its label).
func AppendBytes(dst, f []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f)))
	return append(dst, f...)
}

// AppendNull appends a NULL field.
func AppendNull(dst []byte) []byte { return binary.BigEndian.AppendUint32(dst, 0xffffffff) }

// AppendInt8 appends a bigint field.
func AppendInt8(dst []byte, v int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// AppendTime appends a timestamptz field.
func AppendTime(dst []byte, t time.Time) []byte { return AppendInt8(dst, t.UnixMicro()-pgEpochMicros) }

// AppendJSONB appends a jsonb field holding the JSON text j.
func AppendJSONB(dst, j []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(j)+1))
	dst = append(dst, 1) // jsonb's binary format version
	return append(dst, j...)
}
