// Package bulkdata is the HL7 Bulk Data format, written and read: the
// manifest (the body of a complete $export status, which HAPI, Microsoft,
// Google, Aidbox and the SMART bulk-data-client read and write) with
// fhirbulk's extension in it and what an incremental export after it
// needs; the names of an export's files; the lines of its deleted files
// (Bundles of DELETE requests) and of errors files (OperationOutcomes);
// and how a manifest's urls name files. It knows nothing of databases:
// export, load and bulkimport use it on both sides of one.
package bulkdata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Manifest is a bulk export's manifest.
type Manifest struct {
	// TransactionTime: every resource changed up to this instant is in the
	// export (some changed after it may be too). fhirbulk writes its
	// watermark here, so that a client that asks the next export for
	// _since=transactionTime misses no change.
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []File `json:"output"`
	Deleted             []File `json:"deleted"`
	Error               []File `json:"error"`
	// Extension holds what servers add; fhirbulk's is under the key
	// "fhirbulk" (see Ext).
	Extension map[string]json.RawMessage `json:"extension,omitempty"`
	// OutputFormat is not in the IG, but some servers say with it what
	// format the files are in; fhirbulk writes none.
	OutputFormat string `json:"outputFormat,omitempty"`
}

// IsManifest reports whether a JSON document is an HL7 Bulk Data manifest
// by its shape: it has "output" (which fhirbulk's import manifest never
// has).
func IsManifest(data []byte) bool {
	var probe struct {
		Output json.RawMessage `json:"output"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.Output != nil
}

// ParseManifest reads a manifest document. What it may hold is the IG's
// (and any extension); an error says why it is not one, as "not a bulk
// data manifest: ...". Which members it must have is for the reader:
// ReadChain needs transactionTime and fhirbulk's watermark, an import only
// its files (a url each, checked when resolved).
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a bulk data manifest: %v", err)
	}
	return &m, nil
}

// MarshalJSON writes m with its lists [] when empty: a reader expects
// arrays, not null.
func (m Manifest) MarshalJSON() ([]byte, error) {
	for _, l := range []*[]File{&m.Output, &m.Deleted, &m.Error} {
		if *l == nil {
			*l = []File{}
		}
	}
	type plain Manifest // without this method
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a request URL's & stays &
	if err := enc.Encode(plain(m)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Marshal writes m as the manifest.json of an export: indented JSON and a
// newline.
func (m *Manifest) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// File is one file of a manifest: the type of its resources, its URL
// (relative to the manifest's folder, or absolute) and how many lines.
type File struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count *int64 `json:"count,omitempty"`
}

// Ext is what fhirbulk records in a manifest it writes, to read the
// export back exactly and to go on from it.
type Ext struct {
	Format string `json:"format"` // "aidbox" or "fhir"
	// Since and Until are the bounds the export was made with (changed
	// since, inclusive; changed until, inclusive), empty when none.
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// Snapshot is when the database was read.
	Snapshot string `json:"snapshotTime"`
	// Watermark is where the next incremental export starts: every change
	// at or after it that is not in this export is in the next.
	Watermark string `json:"watermark"`
	Version   string `json:"version,omitempty"` // of fhirbulk
	// Database is the database the export read (none in manifests of
	// fhirbulk before it recorded one).
	Database *Database `json:"database,omitempty"`
	// Types are the types asked for (--type), sorted; none: every type.
	Types []string `json:"types,omitempty"`
	// Compartment is the Patient compartments a Patient- or Group-level
	// export kept: "patients" (every patient's), "patients:ID,ID" or
	// "group:ID"; none: the whole database.
	Compartment string `json:"compartment,omitempty"`
	// Follows is the manifest an incremental export went on from
	// (--since-manifest), as an absolute path with its symbolic links
	// resolved (a "last" link moves on), when known: import names it when
	// this export comes before it. Its watermark is Since.
	Follows string `json:"follows,omitempty"`
}

// Database identifies a database (pg.Identity, as a manifest records it):
// its cluster's system identifier and its OID decide; the rest is for
// people. Never a password.
type Database struct {
	SystemIdentifier string `json:"systemIdentifier,omitempty"`
	Name             string `json:"name"`
	OID              uint32 `json:"oid"`
	Host             string `json:"host,omitempty"`
	Port             int    `json:"port,omitempty"`
}

// ExtKey is the key of fhirbulk's extension in Manifest.Extension.
const ExtKey = "fhirbulk"

// TimeFormat is how instants are written: RFC 3339 in UTC with
// microseconds, as PostgreSQL keeps them.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// FormatTime writes t as TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime reads an instant of a manifest (transactionTime, or one of
// Ext's): RFC 3339, as FormatTime and other servers write them.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: not an RFC 3339 instant", s)
	}
	return t, nil
}

// SetExt records e in m.
func (m *Manifest) SetExt(e Ext) {
	b, _ := json.Marshal(e) // a struct of strings
	if m.Extension == nil {
		m.Extension = map[string]json.RawMessage{}
	}
	m.Extension[ExtKey] = b
}

// Ext is fhirbulk's extension of m, and false when it has none.
func (m *Manifest) Ext() (Ext, bool) {
	var e Ext
	raw, ok := m.Extension[ExtKey]
	if !ok || json.Unmarshal(raw, &e) != nil {
		return Ext{}, false
	}
	return e, true
}

// ErrNoWatermark is returned by ReadChain for a manifest without a
// watermark.
var ErrNoWatermark = errors.New("no fhirbulk watermark (not written by fhirbulk export?)")

// ReadChain reads the manifest at path for an export that goes on from it:
// its watermark, and its fhirbulk extension (what it was made of). path
// is a file, a file:///PATH URL or a bucket's object (s3://B/last/manifest.json),
// read as ReadSpec reads it: bounded, and given up when ctx ends.
func ReadChain(ctx context.Context, path string) (time.Time, Ext, error) {
	data, err := ReadSpec(ctx, path)
	if err != nil {
		return time.Time{}, Ext{}, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return time.Time{}, Ext{}, err
	}
	if m.TransactionTime == "" {
		return time.Time{}, Ext{}, errors.New("not a bulk data manifest: no transactionTime")
	}
	e, ok := m.Ext()
	if !ok || e.Watermark == "" {
		return time.Time{}, Ext{}, ErrNoWatermark
	}
	w, err := ParseTime(e.Watermark)
	if err != nil {
		return time.Time{}, Ext{}, fmt.Errorf("watermark %w", err)
	}
	return w, e, nil
}
