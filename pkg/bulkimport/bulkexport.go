package bulkimport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	pathpkg "path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// What import reads besides its own manifests: bulk exports, as HL7 Bulk
// Data defines them and as servers, the SMART bulk-data-client and
// `fhirbulk export` write them: an HL7 manifest, or a folder of ndjson
// files (with its manifest.json, or without one).

// ParseHL7 reads an HL7 Bulk Data manifest: each output file is an input,
// each deleted file a deletions input, and the error files of the server
// that exported are named in the state, not loaded. Its urls are resolved
// as resolveURL does. Its data is FHIR format, unless its outputFormat or
// fhirbulk's extension says Aidbox format.
func ParseHL7(data []byte, w Where) (*Manifest, error) {
	doc, err := bulkdata.ParseManifest(data)
	if err != nil {
		return nil, manifestErr("%s", oneLine(err.Error()))
	}
	m := &Manifest{Path: w.Path, Dir: w.Dir, FHIR: true, FromExport: true}
	if ext, ok := doc.Ext(); ok {
		m.Export = &ext
		if ext.Format == "aidbox" {
			m.FHIR = false
		}
	}
	if strings.Contains(strings.ToLower(doc.OutputFormat), "aidbox") {
		m.FHIR = false
	}
	for i, f := range doc.Output {
		at := fmt.Sprintf("output[%d]", i)
		if err := store.ValidateType(f.Type); err != nil {
			return nil, manifestErr("%s.type: %v", at, err)
		}
		u, err := resolveURL(f.URL, w, at)
		if err != nil {
			return nil, err
		}
		m.Inputs = append(m.Inputs, Input{ResourceType: f.Type, URL: u, Count: f.Count})
	}
	for i, f := range doc.Deleted {
		u, err := resolveURL(f.URL, w, fmt.Sprintf("deleted[%d]", i))
		if err != nil {
			return nil, err
		}
		m.Deleted = append(m.Deleted, Input{ResourceType: "Bundle", URL: u, Count: f.Count})
	}
	for _, f := range doc.Error {
		m.ServerErrors = append(m.ServerErrors, source.Redact(f.URL))
	}
	// No output and no deleted files is an export of nothing (an empty
	// database, or an incremental export of a quiet day): importing it
	// stores nothing and, in a chain, moves it on.
	return m, nil
}

// ReadFolder reads a bulk export folder: its manifest.json when it has one,
// else every *.ndjson and *.ndjson.gz in it (sorted by name), each one's
// type told by its name. log.ndjson (the bulk-data-client's log) is not
// data. A symbolic link to a regular file is read as the file; any other
// entry with such a name that is not a regular file (a link to nothing or
// to a folder, a folder, a FIFO) makes it fail, naming each, as does a
// file whose type cannot be told: before anything starts, and never is
// data skipped silently.
//
// A manifest.json's urls may name files outside dir only with
// allowOutside (see Where).
func ReadFolder(ctx context.Context, dir string, allowOutside bool) (*Manifest, error) {
	mpath := filepath.Join(dir, "manifest.json")
	data, err := bulkdata.ReadFile(ctx, mpath)
	w := Where{Dir: dir, Path: mpath, AllowOutside: allowOutside}
	switch {
	case err == nil && bulkdata.IsManifest(data):
		return ParseHL7(data, w)
	case err == nil:
		return ParseManifest(data, w)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fsutil.FileError("manifest", mpath, err)
	}
	if _, lerr := os.Lstat(mpath); lerr == nil { // there, but a link to nothing
		return nil, manifestErr("%s: a symbolic link to nothing", mpath)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var irregular, names []string
	for _, e := range entries {
		name := e.Name()
		if !isDataName(name) {
			continue
		}
		if !e.Type().IsRegular() {
			if what := notRegular(filepath.Join(dir, name), e.Type()); what != "" {
				irregular = append(irregular, name+" ("+what+")")
				continue
			}
		}
		names = append(names, name)
	}
	if len(irregular) > 0 {
		sort.Strings(irregular)
		return nil, manifestErr("%s: not a regular file: %s", dir, strings.Join(irregular, ", "))
	}
	return folderManifest(dir, names, func(name string) string { return filepath.Join(dir, name) })
}

// folderManifest is the manifest of a folder without a manifest.json
// (shown names it in errors), whose data files are names (what a folder
// lists ending in .ndjson or .ndjson.gz, but log.ndjson), each read from
// at(name): sorted by name, each one's type told by its name (a
// deleted.Type file holds deletions). A name whose type cannot be told
// fails it, naming each, as does a folder with none.
func folderManifest(shown string, names []string, at func(name string) string) (*Manifest, error) {
	m := &Manifest{Path: shown, Dir: shown, FHIR: true, FromExport: true}
	var unknown []string
	sort.Strings(names)
	for _, name := range names {
		// An errors file has no type: without a manifest, it is not told
		// from data.
		n, ok := bulkdata.ParseName(name)
		if !ok || n.Kind == bulkdata.Errors || store.ValidateType(n.Type) != nil {
			unknown = append(unknown, name)
			continue
		}
		in := Input{ResourceType: n.Type, URL: at(name)}
		if n.Kind == bulkdata.Deleted {
			m.Deleted = append(m.Deleted, in)
		} else {
			m.Inputs = append(m.Inputs, in)
		}
	}
	if len(unknown) > 0 {
		return nil, manifestErr("%s: the type of %s cannot be told from its name (want %s)", shown, strings.Join(unknown, ", "), bulkdata.NameForms)
	}
	if len(m.Inputs) == 0 && len(m.Deleted) == 0 {
		return nil, manifestErr("%s: no manifest.json and no .ndjson files", shown)
	}
	return m, nil
}

// isDataName reports whether a folder's entry name is that of a data file
// (to be told its type, or refused): *.ndjson and *.ndjson.gz, but the
// bulk-data-client's log.ndjson.
func isDataName(name string) bool {
	return (strings.HasSuffix(name, ".ndjson") || strings.HasSuffix(name, ".ndjson.gz")) && name != "log.ndjson"
}

// notRegular says what the folder entry at path, of type typ (as ReadDir
// tells it: the link itself, for a link), is when it is not a regular file
// or a symbolic link to one, and "" when it is one of those.
func notRegular(path string, typ fs.FileMode) string {
	if typ&fs.ModeSymlink == 0 {
		return kindOf(typ)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "a symbolic link to nothing"
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "a symbolic link that cannot be followed: " + err.Error()
	case fi.Mode().IsRegular():
		return ""
	}
	return "a symbolic link to " + kindOf(fi.Mode())
}

// kindOf names a file mode's type that is not a regular file's.
func kindOf(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a folder"
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// IDFor makes the id of an import that has none in its manifest from the
// absolute path of what it reads and the database it loads into: the same
// export imported again into the same database has the same id, so that
// running it again resumes it, and another database makes another import.
// It is the export's name (its folder's, for a manifest.json; a bucket
// URL's last segment of its key, or its bucket) and 8 hex
// digits of a SHA-256 of the path and the database's Key: "full-3b1c2d4e".
func IDFor(path string, db pg.Identity) string {
	h := sha256.New()
	h.Write([]byte(path))
	if db != (pg.Identity{}) {
		h.Write([]byte{0})
		h.Write([]byte(db.Key()))
	}
	name := filepath.Base(path)
	if name == "manifest.json" {
		name = filepath.Base(filepath.Dir(path))
	}
	if loc, err := bucket.Parse(path); err == nil {
		// A bucket's prefix or manifest: named by its key (or bucket),
		// without the query.
		p := loc.Bucket + "/" + strings.TrimSuffix(loc.Key, "/")
		if name = pathpkg.Base(p); name == "manifest.json" {
			name = pathpkg.Base(pathpkg.Dir(p))
		}
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, name)
	name = strings.Trim(name, ".-_")
	if len(name) > 60 {
		name = strings.Trim(name[len(name)-60:], ".-_")
	}
	if name == "" {
		name = "export"
	}
	return name + "-" + hex.EncodeToString(h.Sum(nil)[:4])
}
