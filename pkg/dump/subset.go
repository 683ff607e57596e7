package dump

import (
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// subsettedTag is the meta.tag HL7 gives a resource some of whose
// elements were left out (_elements).
const subsettedTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}`

// subset appends to dst the compact object obj with only the top-level
// members of elements (and id, resourceType, meta), meta tagged SUBSETTED.
func subset(dst, obj []byte, elements []string, members *[]ndjson.Member) ([]byte, error) {
	ms, err := ndjson.SplitMembers((*members)[:0], obj)
	*members = ms
	if err != nil {
		return dst, err
	}
	dst = append(dst, '{')
	var meta []byte
	for _, m := range ms {
		key := string(m.Key)
		if key == "meta" {
			meta = m.Value
			continue
		}
		if key != "id" && key != "resourceType" && !kept(key, elements) {
			continue
		}
		if len(dst) > 1 {
			dst = append(dst, ',')
		}
		dst = ndjson.AppendMember(dst, m.Key, m.Value)
	}
	if len(dst) > 1 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"meta":`...)
	dst, err = appendTagged(dst, meta, members) // obj's members are done with: the buffer is meta's
	if err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

// kept reports whether the top-level key is one of elements: the same
// name, or its primitive extension (_status beside status); a choice
// (value[x]) keeps FHIR's valueQuantity (_valueString) and Aidbox's value.
func kept(key string, elements []string) bool {
	name := strings.TrimPrefix(key, "_")
	for _, e := range elements {
		if name == e {
			return true
		}
		if base, choice := strings.CutSuffix(e, "[x]"); choice &&
			(name == base || len(name) > len(base) && strings.HasPrefix(name, base) && name[len(base)] >= 'A' && name[len(base)] <= 'Z') {
			return true
		}
	}
	return false
}

// appendTagged appends meta (a compact object, or nil) with the tag
// SUBSETTED added to its tag list; members is a buffer to reuse.
func appendTagged(dst, meta []byte, members *[]ndjson.Member) ([]byte, error) {
	if meta == nil {
		return append(dst, `{"tag":[`+subsettedTag+`]}`...), nil
	}
	ms, err := ndjson.SplitMembers((*members)[:0], meta)
	*members = ms
	if err != nil {
		return dst, err
	}
	dst = append(dst, '{')
	tagged := false
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		if string(m.Key) == "tag" && (len(m.Value) < 2 || m.Value[0] != '[') {
			// Not a list, as FHIR wants it: replaced, not doubled.
			tagged = true
			dst = append(ndjson.AppendKey(dst, m.Key), "["+subsettedTag+"]"...)
			continue
		}
		if string(m.Key) == "tag" {
			tagged = true
			dst = ndjson.AppendKey(dst, m.Key)
			dst = append(dst, m.Value[:len(m.Value)-1]...)
			if len(m.Value) > 2 {
				dst = append(dst, ',')
			}
			dst = append(dst, subsettedTag+"]"...)
			continue
		}
		dst = ndjson.AppendMember(dst, m.Key, m.Value)
	}
	if !tagged {
		if len(ms) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"tag":[`+subsettedTag+`]`...)
	}
	return append(dst, '}'), nil
}
