package dumpsql

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// Type OIDs the encoders treat specially.
const (
	oidBool    = 16
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidOID     = 26
	oidJSON    = 114
	oidFloat4  = 700
	oidFloat8  = 701
	oidNumeric = 1700
	oidJSONB   = 3802
)

func isJSONType(oid uint32) bool { return oid == oidJSON || oid == oidJSONB }

func isNumberType(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		return true
	}
	return false
}

// boolText turns PostgreSQL's t/f into true/false.
func boolText(v []byte) []byte {
	switch string(v) {
	case "t":
		return []byte("true")
	case "f":
		return []byte("false")
	}
	return v
}

// csvEncoder writes RFC 4180 CSV (with \n line ends, as psql's COPY does):
// fields with a comma, quote, CR or LF are quoted, NULL is an empty
// unquoted field and an empty string a quoted one, booleans true/false.
type csvEncoder struct{ withHeader bool }

func (e csvEncoder) header(b []byte, cols []column) []byte {
	if !e.withHeader {
		return b
	}
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, []byte(c.name))
	}
	return append(b, '\n')
}

func (csvEncoder) row(b []byte, cols []column, vals [][]byte) []byte {
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		if v == nil {
			continue
		}
		if cols[i].oid == oidBool {
			v = boolText(v)
		}
		b = appendCSVField(b, v)
	}
	return append(b, '\n')
}

func (csvEncoder) footer(b []byte) []byte { return b }

func appendCSVField(b, v []byte) []byte {
	if len(v) > 0 && !bytes.ContainsAny(v, ",\"\r\n") {
		return append(b, v...)
	}
	b = append(b, '"')
	for {
		i := bytes.IndexByte(v, '"')
		if i < 0 {
			break
		}
		b = append(b, v[:i+1]...)
		b = append(b, '"')
		v = v[i+1:]
	}
	b = append(b, v...)
	return append(b, '"')
}

// tsvEncoder writes PostgreSQL's COPY text format: tab separated, \N for
// NULL, backslash escapes, no header; COPY ... FROM reads it back.
type tsvEncoder struct{}

func (tsvEncoder) header(b []byte, _ []column) []byte { return b }

func (tsvEncoder) row(b []byte, _ []column, vals [][]byte) []byte {
	return appendCopyRow(b, vals)
}

func (tsvEncoder) footer(b []byte) []byte { return b }

func appendCopyRow(b []byte, vals [][]byte) []byte {
	for i, v := range vals {
		if i > 0 {
			b = append(b, '\t')
		}
		if v == nil {
			b = append(b, '\\', 'N')
			continue
		}
		b = appendCopyText(b, v)
	}
	return append(b, '\n')
}

// appendCopyText escapes as PostgreSQL's COPY TO does in text format.
func appendCopyText(b, v []byte) []byte {
	start := 0
	for i, c := range v {
		var esc byte
		switch c {
		case '\\':
			esc = '\\'
		case '\t':
			esc = 't'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\b':
			esc = 'b'
		case '\f':
			esc = 'f'
		case '\v':
			esc = 'v'
		default:
			continue
		}
		b = append(b, v[start:i]...)
		b = append(b, '\\', esc)
		start = i + 1
	}
	return append(b, v[start:]...)
}

// ndjsonEncoder writes one JSON object per row, keys in column order:
// numbers as JSON numbers (their exact text), json/jsonb embedded, booleans
// true/false, NULL as null, everything else as a string.
type ndjsonEncoder struct{}

func (ndjsonEncoder) header(b []byte, _ []column) []byte { return b }

func (ndjsonEncoder) row(b []byte, cols []column, vals [][]byte) []byte {
	return append(appendJSONRow(b, cols, vals), '\n')
}

func (ndjsonEncoder) footer(b []byte) []byte { return b }

func appendJSONRow(b []byte, cols []column, vals [][]byte) []byte {
	b = append(b, '{')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = ndjson.AppendString(b, []byte(cols[i].name))
		b = append(b, ':')
		b = appendJSONValue(b, cols[i].oid, v)
	}
	return append(b, '}')
}

func appendJSONValue(b []byte, oid uint32, v []byte) []byte {
	switch {
	case v == nil:
		return append(b, "null"...)
	case oid == oidBool:
		return append(b, boolText(v)...)
	case isJSONType(oid):
		// json keeps its input's whitespace and newlines: compact it.
		out, err := ndjson.AppendCompact(b, v)
		if err != nil {
			return ndjson.AppendString(b, v)
		}
		return out
	case isNumberType(oid) && isJSONNumber(v):
		return append(b, v...)
	}
	return ndjson.AppendString(b, v) // NaN and Infinity too: JSON has no such numbers
}

// isJSONNumber tells finite numbers (PostgreSQL's text for them is JSON's)
// from NaN and Infinity.
func isJSONNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) && v[len(v)-1] >= '0' && v[len(v)-1] <= '9'
}

// sqlEncoder writes a psql script that rebuilds the result as a table:
// CREATE TABLE with the result's column types, then the rows in a COPY
// block (COPY's text format quotes any content safely).
type sqlEncoder struct{ table string }

func (e *sqlEncoder) header(b []byte, cols []column) []byte {
	table := pgx.Identifier{e.table}.Sanitize()
	names := uniqueNames(cols)
	b = append(b, "-- made by fhirbulk dump-sql; replay with: psql -v ON_ERROR_STOP=1 -f FILE\n"...)
	b = append(b, "SET client_encoding = 'UTF8';\n"...)
	b = append(b, "CREATE TABLE "+table+" ("...)
	for i, c := range cols {
		if i > 0 {
			b = append(b, ", "...)
		}
		t := c.sqlType
		if t == "" {
			t = "text"
		}
		b = append(b, names[i]+" "+t...)
	}
	b = append(b, ");\n"...)
	b = append(b, "COPY "+table+" ("+strings.Join(names, ", ")+") FROM stdin;\n"...)
	return b
}

func (*sqlEncoder) row(b []byte, _ []column, vals [][]byte) []byte {
	return appendCopyRow(b, vals)
}

func (*sqlEncoder) footer(b []byte) []byte { return append(b, "\\.\n"...) }

// uniqueNames quotes the column names, suffixing repeats (a, a_2, a_3):
// a table cannot have two columns of one name.
func uniqueNames(cols []column) []string {
	seen := map[string]bool{}
	out := make([]string, len(cols))
	for i, c := range cols {
		name := c.name
		for k := 2; seen[name]; k++ {
			name = c.name + "_" + strconv.Itoa(k)
		}
		seen[name] = true
		out[i] = pgx.Identifier{name}.Sanitize()
	}
	return out
}

// elasticEncoder writes the Elasticsearch/OpenSearch _bulk body: an action
// line then the document, for each row. The _id is the column named id;
// the document is the row as an object, or, for a result of a single
// json/jsonb column holding an object, that object itself.
type elasticEncoder struct {
	index  string
	action []byte // `{"index":{"_index":"NAME"`
	idCol  int
}

func (e *elasticEncoder) header(b []byte, cols []column) []byte {
	e.action = append(e.action[:0], `{"index":{"_index":`...)
	e.action = ndjson.AppendString(e.action, []byte(e.index))
	e.idCol = -1
	for i, c := range cols {
		if c.name == "id" {
			e.idCol = i
			break
		}
	}
	return b
}

func (e *elasticEncoder) row(b []byte, cols []column, vals [][]byte) []byte {
	b = append(b, e.action...)
	if e.idCol >= 0 && vals[e.idCol] != nil {
		b = append(b, `,"_id":`...)
		b = ndjson.AppendString(b, vals[e.idCol])
	}
	b = append(b, "}}\n"...)
	if len(cols) == 1 && isJSONType(cols[0].oid) && vals[0] != nil {
		if doc, err := ndjson.AppendCompact(b, vals[0]); err == nil && len(doc) > len(b) && doc[len(b)] == '{' {
			return append(doc, '\n')
		}
	}
	return append(appendJSONRow(b, cols, vals), '\n')
}

func (*elasticEncoder) footer(b []byte) []byte { return b }
