package bulkdata

import (
	"fmt"
	"regexp"
	"strconv"
)

// ManifestName is the name of an export folder's manifest: its presence
// says the export is complete.
const ManifestName = "manifest.json"

// MarkerName is the object that says an export to a prefix in a bucket is
// being written (or was, by a run that was killed): a prefix holding it and
// no manifest is half an export, never read as a folder.
const MarkerName = ".fhirbulk-export"

// Kind is what a file of a bulk export holds.
type Kind int

const (
	// Output is a file of resources of one type.
	Output Kind = iota
	// Deleted is a file of deleted resources of one type: a Bundle of
	// DELETE requests per line (see AppendDeleted).
	Deleted
	// Errors is the export's errors file: an OperationOutcome per line
	// (see AppendOutcome).
	Errors
)

// Name is what a bulk export file's name says: what it holds, the type of
// its resources, its part when the type is split over several files, and
// whether it is gzipped. Name.String writes it as fhirbulk export names its
// files; ParseName reads that and the names other exporters give theirs.
type Name struct {
	Kind Kind
	Type string // the resources' type (Output, Deleted); none for Errors
	// Split: the file is a numbered part (Patient.000.ndjson), Part its
	// number, even when the type has one part.
	Split bool
	Part  int
	Gzip  bool
}

// String is the file name: Patient.ndjson, Patient.000.ndjson (a split
// type's parts, numbered from 0), deleted.Patient.ndjson, error.ndjson;
// with .gz after it when gzipped.
func (n Name) String() string {
	var s string
	switch n.Kind {
	case Deleted:
		s = "deleted." + n.Type
	case Errors:
		s = "error"
	default:
		s = n.Type
	}
	if n.Split {
		s += fmt.Sprintf(".%03d", n.Part)
	}
	s += ".ndjson"
	if n.Gzip {
		s += ".gz"
	}
	return s
}

// ResourceType is the manifest's type of the file's resources: its Type,
// Bundle for a deleted file, OperationOutcome for an errors file.
func (n Name) ResourceType() string {
	switch n.Kind {
	case Deleted:
		return "Bundle"
	case Errors:
		return "OperationOutcome"
	}
	return n.Type
}

// NameForms lists, for a message, the names ParseName tells a type by.
const NameForms = "Type.ndjson, Type.000.ndjson, Type_1.ndjson or 1.Type.ndjson"

// fileName is how bulk export files are named in the wild: Patient.ndjson,
// Patient.000.ndjson (servers that split, fhirbulk), Patient_1.ndjson,
// Patient-1.ndjson, 1.Patient.ndjson (the SMART bulk-data-client), and
// fhirbulk's deleted.Patient.ndjson and error.ndjson; each also .gz.
var fileName = regexp.MustCompile(`^(?:(deleted)\.|([0-9]+)\.)?([A-Z][A-Za-z0-9]*)(?:[._-]([0-9]+))?\.ndjson(\.gz)?$|^error(?:\.([0-9]+))?\.ndjson(\.gz)?$`)

// ParseName reads a bulk export file's name (the base name, not a path),
// and false when it is none of the forms above (log.ndjson, the
// bulk-data-client's log, is none). The type is only spelled like one
// ([A-Z][A-Za-z0-9]*): whether it is a resource type is for the caller to
// decide. A number before or after the type is the Part (the one after,
// when both; -1 when it has more digits than an int holds).
func ParseName(name string) (Name, bool) {
	g := fileName.FindStringSubmatch(name)
	if g == nil {
		return Name{}, false
	}
	n := Name{Type: g[3], Gzip: g[5] != ""}
	part := g[4]
	switch {
	case g[3] == "": // error.ndjson
		n = Name{Kind: Errors, Gzip: g[7] != ""}
		part = g[6]
	case g[1] != "":
		n.Kind = Deleted
	case part == "":
		part = g[2]
	}
	if part != "" {
		p, err := strconv.Atoi(part)
		if err != nil {
			p = -1 // more digits than an int holds: a part still
		}
		n.Split, n.Part = true, p
	}
	return n, true
}
