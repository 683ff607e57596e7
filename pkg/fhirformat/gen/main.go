// Command gen writes pkg/fhirformat/table.go, the element table the
// FHIR ⇄ Aidbox converter walks, from the official FHIR R4 StructureDefinitions
// (an ndjson.gz file of them, such as ../shared/data/fhir-r4-definitions/
// structuredefinitions.ndjson.gz). Run it with `go generate ./pkg/fhirformat`.
//
// The table has one line per element that conversion cares about, tab
// separated: CONTEXT, KEY, KIND, ARG. A context is a type (Observation,
// Quantity, Extension) or a backbone element path (Observation.component).
// Kinds: c = complex (descend into context ARG), r = Reference, R = a
// resource (convert by its own resourceType), x = one type of a choice
// element (KEY is the FHIR key, e.g. valueQuantity; ARG is "base code", e.g.
// "value Quantity"). Primitive elements and Meta are not listed: they pass
// through. Lines "@ NAME" list the concrete resource types.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	in := flag.String("in", "", "StructureDefinitions, one per line, gzip")
	out := flag.String("out", "table.go", "Go file to write")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	defer f.Close()
	src, err := Generate(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	Snapshot     struct {
		Element []struct {
			ID               string `json:"id"`
			Path             string `json:"path"`
			ContentReference string `json:"contentReference"`
			Type             []struct {
				Code string `json:"code"`
			} `json:"type"`
		} `json:"element"`
	} `json:"snapshot"`
}

// Generate reads gzip ndjson StructureDefinitions and returns table.go.
func Generate(r io.Reader) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	var sds []structureDefinition
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var sd structureDefinition
		if err := json.Unmarshal(sc.Bytes(), &sd); err != nil {
			return nil, err
		}
		if sd.ResourceType != "StructureDefinition" {
			return nil, fmt.Errorf("not a StructureDefinition: %s", sd.ResourceType)
		}
		sds = append(sds, sd)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}

	contexts := map[string]bool{}
	var resources []string
	for _, sd := range sds {
		if sd.Kind != "resource" && sd.Kind != "complex-type" {
			continue
		}
		contexts[sd.Type] = true
		if sd.Kind == "resource" && !sd.Abstract {
			resources = append(resources, sd.Type)
		}
	}
	type line struct{ ctx, key, kind, arg string }
	var lines []line
	seen := map[string]bool{}
	add := func(l line) error {
		k := l.ctx + "\t" + l.key
		if seen[k] {
			return fmt.Errorf("%s: key %s defined twice", l.ctx, l.key)
		}
		seen[k] = true
		lines = append(lines, l)
		return nil
	}
	for _, sd := range sds {
		if !contexts[sd.Type] {
			continue
		}
		for _, e := range sd.Snapshot.Element {
			if strings.Contains(e.ID, ":") {
				continue // a slice: the base element covers it
			}
			dot := strings.LastIndexByte(e.Path, '.')
			if dot < 0 {
				continue // the root element
			}
			ctx, name := e.Path[:dot], e.Path[dot+1:]
			contexts[ctx] = true
			if e.ContentReference != "" {
				if err := add(line{ctx, name, "c", strings.TrimPrefix(e.ContentReference, "#")}); err != nil {
					return nil, err
				}
				continue
			}
			if base, ok := strings.CutSuffix(name, "[x]"); ok {
				for _, t := range e.Type {
					if err := add(line{ctx, base + upperFirst(t.Code), "x", base + " " + t.Code}); err != nil {
						return nil, err
					}
				}
				continue
			}
			if len(e.Type) != 1 {
				return nil, fmt.Errorf("%s: %d types and not a choice", e.Path, len(e.Type))
			}
			switch code := e.Type[0].Code; {
			case code == "Reference":
				err = add(line{ctx, name, "r", ""})
			case code == "Resource":
				err = add(line{ctx, name, "R", ""})
			case code == "BackboneElement" || code == "Element":
				err = add(line{ctx, name, "c", e.Path})
			case code == "Meta":
				// Not descended into: the database layer owns meta.
			case isComplex(code):
				err = add(line{ctx, name, "c", code})
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// Every context a line points to must exist.
	for _, l := range lines {
		if l.kind == "c" && !contexts[l.arg] {
			return nil, fmt.Errorf("%s.%s: no definition of %s", l.ctx, l.key, l.arg)
		}
		if l.kind == "x" {
			code := strings.Fields(l.arg)[1]
			if isComplex(code) && !contexts[code] {
				return nil, fmt.Errorf("%s.%s: no definition of %s", l.ctx, l.key, code)
			}
		}
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].ctx != lines[j].ctx {
			return lines[i].ctx < lines[j].ctx
		}
		return lines[i].key < lines[j].key
	})
	sort.Strings(resources)

	var b bytes.Buffer
	b.WriteString("// Code generated by pkg/fhirformat/gen from the FHIR R4 (4.0.1) StructureDefinitions; DO NOT EDIT.\n\n")
	b.WriteString("package fhirformat\n\n")
	b.WriteString("// r4Table is the element table (see gen/main.go for its format).\n")
	b.WriteString("const r4Table = `")
	for _, r := range resources {
		fmt.Fprintf(&b, "@\t%s\n", r)
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", l.ctx, l.key, l.kind, l.arg)
	}
	b.WriteString("`\n")
	return b.Bytes(), nil
}

// isComplex tells a complex datatype code (Quantity) from a primitive one
// (string, or a FHIRPath system type URL).
func isComplex(code string) bool {
	return code != "" && code[0] >= 'A' && code[0] <= 'Z'
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
