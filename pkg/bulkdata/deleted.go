package bulkdata

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// A deleted file (Name.Kind Deleted, the manifest's "deleted") lists the
// resources an incremental export found deleted, one line each, as the IG
// wants them: a transaction Bundle whose entries are DELETE requests,
//
//	{"resourceType":"Bundle","type":"transaction","meta":{"versionId":"7","lastUpdated":"2026-11-29T02:00:00.123456Z"},"entry":[{"request":{"method":"DELETE","url":"Patient/123"}}]}
//
// The deletion's version and time go in the Bundle's meta: an entry of a
// transaction Bundle may not carry a response (FHIR's bdl-4). Other
// servers' lines may hold several entries, absolute urls, and no meta.

// AppendDeleted appends the line (with its newline) for resource typ/id
// deleted as version versionID at time at.
func AppendDeleted(b []byte, typ, id string, versionID int64, at time.Time) []byte {
	b = append(b, `{"resourceType":"Bundle","type":"transaction","meta":{"versionId":"`...)
	b = strconv.AppendInt(b, versionID, 10)
	b = append(b, `","lastUpdated":"`...)
	b = append(b, FormatTime(at)...)
	b = append(b, `"},"entry":[{"request":{"method":"DELETE","url":`...)
	b = ndjson.AppendString(b, []byte(typ+"/"+id))
	return append(b, "}}]}\n"...)
}

// Deletion is the resource a DELETE request deletes.
type Deletion struct{ Type, ID string }

// DeletedLine is one line of a deleted file, as DeletedParser reads it.
type DeletedLine struct {
	Deletions []Deletion // its entries', in order
	// VersionID and LastUpdated are the raw JSON values of the Bundle's
	// meta.versionId and meta.lastUpdated (fhirbulk writes the deletion's
	// there), nil when absent. Whether they are good is the reader's to
	// say: only a load that keeps them (--preserve-meta) looks.
	VersionID, LastUpdated []byte
}

// DeletedParser reads the lines of deleted files, one at a time, reusing
// its memory: a line is compacted once and its members found at the byte
// level.
type DeletedParser struct {
	// ValidRef, when set, is the reader's own rule for the type and id of
	// a DELETE (those it can store): a url whose are not is a bad line,
	// as one that is not TYPE/ID.
	ValidRef func(typ, id string) bool

	compact []byte
	spans   [2]ndjson.Span
	line    DeletedLine
}

// Parse reads one line (not blank). The result is good until the next
// call. An error says, for a person, why the line is not a Bundle of
// DELETE requests; the line is then bad as a whole.
func (p *DeletedParser) Parse(line []byte) (*DeletedLine, error) {
	p.line = DeletedLine{Deletions: p.line.Deletions[:0]}
	var err error
	p.compact, err = ndjson.CompactObject(p.compact[:0], line, []string{"entry", "meta"}, p.spans[:])
	if err != nil {
		return nil, errors.New(ndjson.LineReason(err))
	}
	if !p.spans[0].Found() {
		return nil, errors.New(`no "entry": want a Bundle of DELETE requests`)
	}
	entries := p.compact[p.spans[0].Start+len(`"entry":`) : p.spans[0].End]
	if err := p.entries(entries); err != nil {
		return nil, err
	}
	if p.spans[1].Found() {
		meta := p.compact[p.spans[1].Start+len(`"meta":`) : p.spans[1].End]
		ndjson.Members(meta, func(k, v []byte) bool { // a meta that is not an object gives nothing
			if text, ok := ndjson.KeyText(k); ok {
				k = text
			}
			switch string(k) {
			case "versionId":
				p.line.VersionID = v
			case "lastUpdated":
				p.line.LastUpdated = v
			}
			return true
		})
	}
	return &p.line, nil
}

// entries reads the DELETE requests of a Bundle's entry array.
func (p *DeletedParser) entries(entries []byte) error {
	var bad error
	eerr := ndjson.Elements(entries, func(entry []byte) {
		if bad != nil {
			return
		}
		var method, url []byte
		ndjson.Members(entry, func(k, v []byte) bool { // a malformed entry has no request: said below
			if string(k) == "request" {
				ndjson.Members(v, func(k, v []byte) bool {
					switch string(k) {
					case "method":
						method, _ = ndjson.Unquote(v)
					case "url":
						url, _ = ndjson.Unquote(v)
					}
					return true
				})
			}
			return true
		})
		if !strings.EqualFold(string(method), "DELETE") {
			bad = fmt.Errorf("an entry that is not a DELETE request (method %q)", method)
			return
		}
		t, id, ok := ParseDeleteURL(string(url))
		if ok && p.ValidRef != nil {
			ok = p.ValidRef(t, id)
		}
		if !ok {
			bad = fmt.Errorf("DELETE of %q: want TYPE/ID", url)
			return
		}
		p.line.Deletions = append(p.line.Deletions, Deletion{Type: t, ID: id})
	})
	if eerr != nil {
		return errors.New(`"entry" is not an array`)
	}
	return bad
}

// typeName is how a resource type is spelled.
var typeName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// ParseDeleteURL reads a DELETE request's url: "Patient/123", or an
// absolute URL ending in it ("https://server/fhir/Patient/123"); a query
// (a conditional delete) or a fragment is not one resource. The type is
// only checked to be spelled as one.
func ParseDeleteURL(url string) (typ, id string, ok bool) {
	if strings.ContainsAny(url, "?#") {
		return "", "", false
	}
	parts := strings.Split(strings.TrimSuffix(url, "/"), "/")
	if len(parts) < 2 {
		return "", "", false
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if !typeName.MatchString(typ) || id == "" {
		return "", "", false
	}
	return typ, id, true
}
