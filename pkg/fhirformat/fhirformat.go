// Package fhirformat converts resources between FHIR format and the Aidbox
// format they are stored in, driven by a table generated from the FHIR R4
// StructureDefinitions (table.go; see gen/) and the R4 resource types
// (r4types):
//
//   - References: {"reference":"Patient/1"} ⇄ {"resourceType":"Patient","id":"1"};
//     "#c1" ⇄ {"localRef":"c1"}; any other reference ⇄ {"uri":"..."}.
//   - Choice elements: {"valueQuantity":{...}} ⇄ {"value":{"Quantity":{...}}},
//     a primitive's "_valueString" going along as "_string".
//   - Resources inside resources (contained, Bundle.entry.resource, ...)
//     by their own type's rules.
//
// Elements the table does not know, primitive extensions (_birthDate) and
// meta pass through unchanged. The conversion is a rewrite of the JSON text:
// it never decodes a value, so numbers, strings and array order stay exactly
// as they were. Input must be compact JSON (ndjson.CompactObject makes it so).
package fhirformat

import (
	"bytes"
	"strings"
	"sync"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
)

// Direction says which way to convert.
type Direction int

const (
	ToAidbox Direction = iota // FHIR format in, Aidbox format out
	ToFHIR                    // Aidbox format in, FHIR format out
)

type kind uint8

const (
	kComplex    kind = iota + 1 // descend into next
	kReference                  // a Reference: convert it, then descend into Reference
	kResource                   // a resource: descend by its own resourceType
	kChoice                     // one type of a choice element (FHIR key valueQuantity)
	kChoiceBase                 // a choice element's Aidbox key (value)
)

type elem struct {
	kind  kind
	next  *elemCtx         // kComplex; kChoice of a complex type
	base  string           // kChoice: the Aidbox key ("value")
	code  string           // kChoice: the type code ("Quantity", "dateTime")
	key   string           // kChoice: the FHIR key ("valueQuantity")
	ref   bool             // kChoice: the type is Reference
	codes map[string]*elem // kChoiceBase: type code → its kChoice element
}

type elemCtx struct {
	name      string
	nameBytes []byte // name, for the format check's paths
	elems     map[string]*elem
	isRef     bool // the Reference datatype itself
}

type table struct {
	contexts  map[string]*elemCtx
	resources map[string]*elemCtx // concrete resource types
	reference *elemCtx
}

var loadTable = sync.OnceValue(func() *table { return parseTable(r4Table) })

// parseTable builds the lookup structures from the generated text.
func parseTable(text string) *table {
	t := &table{contexts: map[string]*elemCtx{}, resources: map[string]*elemCtx{}}
	ctx := func(name string) *elemCtx {
		c := t.contexts[name]
		if c == nil {
			c = &elemCtx{name: name, nameBytes: []byte(name), elems: map[string]*elem{}}
			t.contexts[name] = c
		}
		return c
	}
	for _, name := range r4types.Names() {
		t.resources[name] = ctx(name)
	}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		f := strings.Split(line, "\t")
		c, key, k, arg := ctx(f[0]), f[1], f[2], f[3]
		switch k {
		case "c":
			c.elems[key] = &elem{kind: kComplex, next: ctx(arg)}
		case "r":
			c.elems[key] = &elem{kind: kReference}
		case "R":
			c.elems[key] = &elem{kind: kResource}
		case "x":
			base, code, _ := strings.Cut(arg, " ")
			e := &elem{kind: kChoice, base: base, code: code, key: key, ref: code == "Reference"}
			if code[0] >= 'A' && code[0] <= 'Z' && !e.ref {
				e.next = ctx(code)
			}
			c.elems[key] = e
			b := c.elems[base]
			if b == nil {
				b = &elem{kind: kChoiceBase, codes: map[string]*elem{}}
				c.elems[base] = b
			}
			b.codes[code] = e
		}
	}
	t.reference = ctx("Reference")
	t.reference.isRef = true
	return t
}

// Converter rewrites resources. It reuses its buffers, so one Converter
// serves one goroutine.
type Converter struct {
	t      *table
	dir    Direction
	levels []level // scratch per nesting depth
}

type level struct {
	members []ndjson.Member
	inner   []ndjson.Member
	elems   [][]byte
	bases   []string
}

// New returns a converter for one direction.
func New(dir Direction) *Converter {
	// Allocated once to the full depth: level pointers must stay valid
	// while deeper levels are in use.
	return &Converter{t: loadTable(), dir: dir, levels: make([]level, maxDepth+4)}
}

// errNotObject is returned for a resource that is not a JSON object.
var errNotObject = &ndjson.SyntaxError{Reason: "not an object"}

// Resource appends the converted form of the compact JSON object res to
// dst. Its type comes from its resourceType member; an unknown type passes
// through unchanged.
func (c *Converter) Resource(dst, res []byte) ([]byte, error) {
	return c.resource(dst, res, "", 0)
}

// ResourceOfType is Resource for a resource stored without its
// resourceType member (as in the database), of type typ.
func (c *Converter) ResourceOfType(dst, res []byte, typ string) ([]byte, error) {
	return c.resource(dst, res, typ, 0)
}

func (c *Converter) resource(dst, res []byte, typ string, depth int) ([]byte, error) {
	if len(res) == 0 || res[0] != '{' {
		return dst, errNotObject
	}
	if depth > maxDepth {
		return dst, &ndjson.SyntaxError{Reason: "nested too deep"}
	}
	lv := c.level(depth)
	var err error
	lv.members, err = ndjson.SplitMembers(lv.members[:0], res)
	if err != nil {
		return dst, err
	}
	ctx := c.t.resources[typ]
	if typ == "" {
		for _, m := range lv.members {
			if string(m.Key) == "resourceType" {
				if name, ok := ndjson.Unquote(m.Value); ok {
					ctx = c.t.resources[string(name)]
				}
				break
			}
		}
	}
	if ctx == nil {
		return append(dst, res...), nil
	}
	return c.members(dst, lv.members, ctx, depth)
}

func (c *Converter) level(depth int) *level {
	return &c.levels[depth]
}

// maxDepth bounds recursion on hostile input; real resources nest a few
// dozen levels at most.
const maxDepth = 200

// object converts one object value of context ctx.
func (c *Converter) object(dst, obj []byte, ctx *elemCtx, depth int) ([]byte, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return append(dst, obj...), nil // not an object where one belongs: leave it
	}
	if depth > maxDepth {
		return dst, &ndjson.SyntaxError{Reason: "nested too deep"}
	}
	lv := c.level(depth)
	var err error
	lv.members, err = ndjson.SplitMembers(lv.members[:0], obj)
	if err != nil {
		return dst, err
	}
	return c.members(dst, lv.members, ctx, depth)
}

// members writes the object made of ms, converted as context ctx.
func (c *Converter) members(dst []byte, ms []ndjson.Member, ctx *elemCtx, depth int) ([]byte, error) {
	if ctx.isRef {
		return c.reference(dst, ms, ctx, depth)
	}
	lv := c.level(depth)
	lv.bases = lv.bases[:0]
	dst = append(dst, '{')
	first := true
	sep := func() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
	}
	var err error
	for i, m := range ms {
		e := ctx.elems[string(m.Key)]
		if c.dir == ToAidbox && e == nil && len(m.Key) > 1 && m.Key[0] == '_' {
			// _valueString travels with valueString.
			if pe := ctx.elems[string(m.Key[1:])]; pe != nil && pe.kind == kChoice {
				e = pe
			}
		}
		switch {
		case e == nil, e.kind == kChoice && c.dir == ToFHIR, e.kind == kChoiceBase && c.dir == ToAidbox:
			sep()
			dst = appendMember(dst, m)
		case e.kind == kChoice:
			if contains(lv.bases, e.base) {
				continue // already written with the first member of its group
			}
			lv.bases = append(lv.bases, e.base)
			sep()
			if dst, err = c.choiceToAidbox(dst, ms[i:], ctx, e.base, depth); err != nil {
				return dst, err
			}
		case e.kind == kChoiceBase:
			sep()
			if dst, err = c.choiceToFHIR(dst, m, e, depth); err != nil {
				return dst, err
			}
		default:
			sep()
			dst = ndjson.AppendKey(dst, m.Key)
			if dst, err = c.value(dst, m.Value, e, depth+1); err != nil {
				return dst, err
			}
		}
	}
	return append(dst, '}'), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func appendMember(dst []byte, m ndjson.Member) []byte {
	return ndjson.AppendMember(dst, m.Key, m.Value)
}

// value converts the value of a complex, Reference or Resource element: an
// object, or an array of them.
func (c *Converter) value(dst, v []byte, e *elem, depth int) ([]byte, error) {
	if len(v) > 0 && v[0] == '[' {
		lv := c.level(depth)
		var err error
		lv.elems, err = ndjson.SplitElements(lv.elems[:0], v)
		if err != nil {
			return dst, err
		}
		// The elements are converted at depth+1, so lv.elems stays intact.
		dst = append(dst, '[')
		for i, el := range lv.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = c.single(dst, el, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	return c.single(dst, v, e, depth)
}

func (c *Converter) single(dst, v []byte, e *elem, depth int) ([]byte, error) {
	switch e.kind {
	case kComplex:
		return c.object(dst, v, e.next, depth)
	case kReference:
		return c.object(dst, v, c.t.reference, depth)
	case kResource:
		if len(v) == 0 || v[0] != '{' {
			return append(dst, v...), nil
		}
		return c.resource(dst, v, "", depth)
	case kChoice:
		switch {
		case e.ref:
			return c.object(dst, v, c.t.reference, depth)
		case e.next != nil:
			return c.object(dst, v, e.next, depth)
		}
	}
	return append(dst, v...), nil
}

// choiceToAidbox writes `"value":{"Quantity":...,"_string":...}` for every
// member of ms (which starts at the group's first member) that belongs to
// choice element base, in their order.
func (c *Converter) choiceToAidbox(dst []byte, ms []ndjson.Member, ctx *elemCtx, base string, depth int) ([]byte, error) {
	dst = append(dst, '"')
	dst = append(dst, base...)
	dst = append(dst, `":{`...)
	n := 0
	var err error
	for _, m := range ms {
		key, ext := m.Key, false
		if len(key) > 1 && key[0] == '_' {
			key, ext = key[1:], true
		}
		e := ctx.elems[string(key)]
		if e == nil || e.kind != kChoice || e.base != base {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, '"')
		if ext {
			dst = append(dst, '_')
		}
		dst = append(dst, e.code...)
		dst = append(dst, '"', ':')
		if ext { // a primitive's extension passes through
			dst = append(dst, m.Value...)
			continue
		}
		if dst, err = c.single(dst, m.Value, e, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// choiceToFHIR writes the members of an Aidbox choice object m
// ({"Quantity":...}) as FHIR keys (valueQuantity). If any inner key is not
// one of the element's type codes, m passes through unchanged.
func (c *Converter) choiceToFHIR(dst []byte, m ndjson.Member, b *elem, depth int) ([]byte, error) {
	if len(m.Value) == 0 || m.Value[0] != '{' {
		return appendMember(dst, m), nil
	}
	lv := c.level(depth)
	var err error
	lv.inner, err = ndjson.SplitMembers(lv.inner[:0], m.Value)
	if err != nil {
		return dst, err
	}
	if len(lv.inner) == 0 {
		return appendMember(dst, m), nil
	}
	for _, in := range lv.inner {
		code := in.Key
		if len(code) > 0 && code[0] == '_' {
			code = code[1:]
		}
		if b.codes[string(code)] == nil {
			return appendMember(dst, m), nil
		}
	}
	inner := lv.inner // deeper levels use their own scratch
	for i, in := range inner {
		if i > 0 {
			dst = append(dst, ',')
		}
		code, ext := in.Key, false
		if code[0] == '_' {
			code, ext = code[1:], true
		}
		e := b.codes[string(code)]
		dst = append(dst, '"')
		if ext {
			dst = append(dst, '_')
		}
		dst = append(dst, e.key...)
		dst = append(dst, '"', ':')
		if ext {
			dst = append(dst, in.Value...)
			continue
		}
		if dst, err = c.single(dst, in.Value, e, depth+1); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// reference converts a Reference object's own target, then its other
// members as the Reference datatype (identifier.assigner, extension, ...).
func (c *Converter) reference(dst []byte, ms []ndjson.Member, ctx *elemCtx, depth int) ([]byte, error) {
	if c.dir == ToAidbox {
		return c.referenceToAidbox(dst, ms, ctx, depth)
	}
	return c.referenceToFHIR(dst, ms, ctx, depth)
}

func (c *Converter) referenceToAidbox(dst []byte, ms []ndjson.Member, ctx *elemCtx, depth int) ([]byte, error) {
	hasID := false
	for _, m := range ms {
		if string(m.Key) == "id" {
			hasID = true
		}
	}
	dst = append(dst, '{')
	var err error
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		if string(m.Key) == "reference" && len(m.Value) >= 2 && m.Value[0] == '"' {
			dst = c.splitReference(dst, m.Value, hasID)
			continue
		}
		if dst, err = c.referenceMember(dst, m, ctx, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// referenceMember writes a member of a Reference other than its target,
// converted as the Reference datatype says (identifier, extension).
func (c *Converter) referenceMember(dst []byte, m ndjson.Member, ctx *elemCtx, depth int) ([]byte, error) {
	if e := ctx.elems[string(m.Key)]; e != nil && e.kind != kChoice && e.kind != kChoiceBase {
		dst = ndjson.AppendKey(dst, m.Key)
		return c.value(dst, m.Value, e, depth+1)
	}
	return appendMember(dst, m), nil
}

// splitReference writes the Aidbox members for the FHIR reference string
// literal lit: localRef, resourceType+id, or uri.
func (c *Converter) splitReference(dst, lit []byte, hasID bool) []byte {
	s := lit[1 : len(lit)-1]
	if len(s) > 0 && s[0] == '#' {
		dst = append(dst, `"localRef":"`...)
		dst = append(dst, s[1:]...)
		return append(dst, '"')
	}
	if !hasID && c.splits(s) {
		slash := bytes.IndexByte(s, '/')
		dst = append(dst, `"resourceType":"`...)
		dst = append(dst, s[:slash]...)
		dst = append(dst, `","id":"`...)
		dst = append(dst, s[slash+1:]...)
		return append(dst, '"')
	}
	dst = append(dst, `"uri":`...)
	return append(dst, lit...)
}

// splits reports whether reference text s is Type/id: a concrete resource
// type and a FHIR id.
func (c *Converter) splits(s []byte) bool { return c.t.splits(s) }

func (t *table) splits(s []byte) bool {
	slash := bytes.IndexByte(s, '/')
	return slash > 0 && isID(s[slash+1:]) && t.resources[string(s[:slash])] != nil
}

// isID matches a FHIR id: [A-Za-z0-9\-.]{1,64}.
func isID(s []byte) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, b := range s {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

func (c *Converter) referenceToFHIR(dst []byte, ms []ndjson.Member, ctx *elemCtx, depth int) ([]byte, error) {
	from, ref := c.t.aidboxTarget(ms, nil)
	dst = append(dst, '{')
	n := 0
	written := false
	var err error
	for _, m := range ms {
		if contains(from, string(m.Key)) {
			if written {
				continue
			}
			written = true
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `"reference":`...)
			dst = append(dst, ref...)
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		if dst, err = c.referenceMember(dst, m, ctx, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// aidboxTarget finds the Aidbox members of a Reference that make its
// target: localRef, else uri, else resourceType and id (both strings). It
// returns the members a FHIR "reference" replaces (nil when the Reference
// has no such target), and dst with that reference's JSON string appended. Only what reads back the same
// way counts: a uri that would come back as a localRef or a split
// reference, or a resourceType/id that is not a resource type and a FHIR
// id, stays as it is.
func (t *table) aidboxTarget(ms []ndjson.Member, dst []byte) (from []string, ref []byte) {
	var localRef, uri, rt, id []byte
	for _, m := range ms {
		switch string(m.Key) {
		case "localRef":
			localRef = m.Value
		case "uri":
			uri = m.Value
		case "resourceType":
			rt = m.Value
		case "id":
			id = m.Value
		}
	}
	switch {
	case isString(localRef):
		return fromLocalRef, append(append(append(dst, `"#`...), localRef[1:len(localRef)-1]...), '"')
	case isString(uri):
		s := uri[1 : len(uri)-1]
		if (len(s) > 0 && s[0] == '#') || (id == nil && t.splits(s)) {
			return nil, dst
		}
		return fromURI, append(dst, uri...)
	case isString(rt) && isString(id) && t.resources[string(rt[1:len(rt)-1])] != nil && isID(id[1:len(id)-1]):
		dst = append(dst, rt[:len(rt)-1]...)
		dst = append(dst, '/')
		return fromTypeID, append(dst, id[1:]...)
	}
	return nil, dst
}

var (
	fromLocalRef = []string{"localRef"}
	fromURI      = []string{"uri"}
	fromTypeID   = []string{"resourceType", "id"}
)

func isString(v []byte) bool { return len(v) >= 2 && v[0] == '"' }
