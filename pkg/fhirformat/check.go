package fhirformat

import (
	"bytes"
	"fmt"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// Format is the shape a resource is written in.
type Format uint8

const (
	Aidbox Format = iota + 1 // as stored: {"value":{"Quantity":…}}, {"resourceType":"Patient","id":"1"}
	FHIR                     // as exchanged: {"valueQuantity":…}, {"reference":"Patient/1"}
)

func (f Format) String() string {
	if f == FHIR {
		return "FHIR"
	}
	return "Aidbox"
}

// CheckLines is how many lines of a source the format check reads, at the
// most: it ends at the first line that shows the right format, so the
// bound matters for data that shows neither (a Location without
// references), which is the same in both formats as far as it goes.
const CheckLines = 1000

// FormatError is input in the other format than the one it was given
// as: FHIR lines in an Aidbox-format load, or the reverse.
type FormatError struct {
	Line  int64
	Found Format // the format the line is in
	Path  string // its first element of that format, as Observation.valueQuantity
	Hint  string // what to do about it, in the caller's words ("" none)
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("line %d is %s format (%s)", e.Line, e.Found, e.Path)
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Checker tells whether resources said to be in one format are written in
// the other: the mistake of loading FHIR data as Aidbox data (or the
// reverse), which stores it wrongly without any error.
//
// A resource is in the other format exactly when the converter from that
// format would rewrite it: in Aidbox format, a choice element spelled the
// FHIR way (valueQuantity) or a Reference holding a "reference" string; in
// FHIR format, a choice element spelled the Aidbox way
// ("value":{"Quantity":…}) or a Reference made of resourceType and id,
// localRef or uri. Elements are judged only where the R4 table says what
// they are; resources of types it does not know are not judged. A Checker
// serves one goroutine.
type Checker struct {
	t     *table
	want  Format
	path  [][]byte          // element names from the outer resource down (not copied)
	right bool              // an element in the wanted format was seen
	ref   []byte            // scratch for aidboxTarget
	base  int               // where in path the resource being looked at starts
	scrat [][]ndjson.Member // member scratch per depth
	elems [][][]byte        // array scratch per depth
}

// NewChecker returns a checker for resources that should be in format want.
func NewChecker(want Format) *Checker {
	return &Checker{t: loadTable(), want: want}
}

// Right reports whether the last resource Misfit looked at has an element
// that differs between the formats written in the wanted one: a source
// whose lines are all of one format can be taken as in the right format
// from then on.
func (c *Checker) Right() bool { return c.right }

// Want is the format the checker wants.
func (c *Checker) Want() Format { return c.want }

// Misfit returns where the compact JSON object res, of type typ (or of its
// resourceType when typ is ""), is written in the format other than the
// one wanted: the path of the first such element, as
// "Observation.valueQuantity" (an element of a resource inside it, such as
// a Bundle entry's, is named from that resource's type). It returns "" when
// nothing in res is of the other format, and an error only for JSON it
// cannot split.
func (c *Checker) Misfit(res []byte, typ string) (string, error) {
	c.path, c.base, c.right = c.path[:0], 0, false
	return c.resource(res, typ, 0)
}

func (c *Checker) members(obj []byte, depth int) ([]ndjson.Member, error) {
	for len(c.scrat) <= depth {
		c.scrat = append(c.scrat, nil)
	}
	ms, err := ndjson.SplitMembers(c.scrat[depth][:0], obj)
	c.scrat[depth] = ms
	return ms, err
}

func (c *Checker) resource(res []byte, typ string, depth int) (string, error) {
	if len(res) == 0 || res[0] != '{' {
		return "", nil
	}
	if depth > maxDepth {
		return "", &ndjson.SyntaxError{Reason: "nested too deep"}
	}
	ms, err := c.members(res, depth)
	if err != nil {
		return "", err
	}
	ctx := c.t.resources[typ]
	if typ == "" {
		for _, m := range ms {
			if string(m.Key) == "resourceType" {
				if name, ok := ndjson.Unquote(m.Value); ok {
					ctx = c.t.resources[string(name)]
				}
				break
			}
		}
	}
	if ctx == nil {
		return "", nil // not judged
	}
	// A resource's elements are named from its type.
	base, n := c.base, len(c.path)
	c.base = n
	c.path = append(c.path, ctx.nameBytes)
	found, err := c.object(ms, ctx, depth)
	c.base, c.path = base, c.path[:n]
	return found, err
}

// here is the path of the element being looked at, and of names below it.
func (c *Checker) here(names ...[]byte) string {
	return string(bytes.Join(append(c.path[c.base:len(c.path):len(c.path)], names...), []byte(".")))
}

func (c *Checker) object(ms []ndjson.Member, ctx *elemCtx, depth int) (string, error) {
	if ctx.isRef {
		return c.reference(ms, ctx, depth)
	}
	for _, m := range ms {
		key := m.Key
		e := ctx.elems[string(key)]
		if e == nil {
			// _valueString: the extension of a FHIR-spelled choice.
			if c.want == Aidbox && len(key) > 1 && key[0] == '_' {
				if pe := ctx.elems[string(key[1:])]; pe != nil && pe.kind == kChoice {
					return c.here(key), nil
				}
			}
			continue
		}
		switch e.kind {
		case kChoice:
			if c.want == Aidbox {
				return c.here(key), nil
			}
			c.right = true // FHIR format: what is inside is not looked at (nor converted)
		case kChoiceBase:
			if code := c.aidboxChoice(m.Value, e, depth); code != nil {
				if c.want == FHIR {
					return c.here(key, code), nil
				}
				c.right = true
			}
		default:
			if found, err := c.value(key, m.Value, e, depth+1); found != "" || err != nil {
				return found, err
			}
		}
	}
	return "", nil
}

// aidboxChoice returns the first type code of the choice object v
// ({"Quantity":…}) when every key of v is a type code of the element (as
// the converter to FHIR requires), else nil.
func (c *Checker) aidboxChoice(v []byte, b *elem, depth int) []byte {
	if len(v) == 0 || v[0] != '{' {
		return nil
	}
	inner, err := c.members(v, depth+1)
	if err != nil || len(inner) == 0 {
		return nil
	}
	for _, in := range inner {
		code := in.Key
		if len(code) > 0 && code[0] == '_' {
			code = code[1:]
		}
		if b.codes[string(code)] == nil {
			return nil
		}
	}
	return inner[0].Key
}

// value looks into the value of element key: an object or an array of them.
func (c *Checker) value(key []byte, v []byte, e *elem, depth int) (string, error) {
	c.path = append(c.path, key)
	defer func() { c.path = c.path[:len(c.path)-1] }()
	if len(v) > 0 && v[0] == '[' {
		for len(c.elems) <= depth {
			c.elems = append(c.elems, nil)
		}
		els, err := ndjson.SplitElements(c.elems[depth][:0], v)
		c.elems[depth] = els
		if err != nil {
			return "", err
		}
		for _, el := range els {
			if found, err := c.single(el, e, depth+1); found != "" || err != nil {
				return found, err
			}
		}
		return "", nil
	}
	return c.single(v, e, depth)
}

func (c *Checker) single(v []byte, e *elem, depth int) (string, error) {
	if len(v) == 0 || v[0] != '{' {
		return "", nil
	}
	if depth > maxDepth {
		return "", &ndjson.SyntaxError{Reason: "nested too deep"}
	}
	var ctx *elemCtx
	switch e.kind {
	case kComplex:
		ctx = e.next
	case kReference:
		ctx = c.t.reference
	case kResource:
		return c.resource(v, "", depth)
	default:
		return "", nil
	}
	ms, err := c.members(v, depth)
	if err != nil {
		return "", err
	}
	return c.object(ms, ctx, depth)
}

// reference judges a Reference: its target (as the converters would
// rewrite it), then its other members as the Reference datatype.
func (c *Checker) reference(ms []ndjson.Member, ctx *elemCtx, depth int) (string, error) {
	fhirTarget := false
	for _, m := range ms {
		if string(m.Key) == "reference" && isString(m.Value) {
			fhirTarget = true
		}
	}
	var from []string
	from, c.ref = c.t.aidboxTarget(ms, c.ref[:0])
	switch {
	case fhirTarget && c.want == Aidbox, from != nil && c.want == FHIR:
		return c.here(), nil
	case fhirTarget || from != nil:
		c.right = true
	}
	for _, m := range ms {
		if e := ctx.elems[string(m.Key)]; e != nil && e.kind != kChoice && e.kind != kChoiceBase {
			if found, err := c.value(m.Key, m.Value, e, depth+1); found != "" || err != nil {
				return found, err
			}
		}
	}
	return "", nil
}
