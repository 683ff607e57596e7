package bulkimport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// The order of a chain of exports. `fhirbulk export --since-manifest`
// makes a chain: a full export, then incremental ones, each holding what
// changed since the watermark of the one before (its Since). Imported out
// of order, an incremental export reverts what a later one brought
// (updates go back, deleted resources come back) or leaves a gap. So the
// state folder remembers, per target database and per chain (the source
// database and the types exported), the last export imported, and an
// import of an incremental export is refused when:
//
//   - nothing of its chain was imported into the target, or its Since is
//     after the last imported watermark: an export in between is missing
//     (the one it follows is named, when its manifest says);
//   - its watermark is not after the last imported one: it is older than
//     what is there, and would revert it (the very export imported last
//     is let through: importing it again changes nothing).
//
// A full export (no Since) is always allowed, and starts the chain again.
// Manifests that fhirbulk did not write, or wrote before it recorded the
// database, are not checked.

// chainsFile is the file of the state folder that remembers the chains;
// its name starts with a dot so that List does not take it for an import.
const chainsFile = ".import-chains.json"

// chains is chainsFile: per target database (pg.Identity.Key), per chain
// (chainKey), the last export imported.
type chains struct {
	Targets map[string]map[string]chainLink `json:"targets"`
}

// chainLink is an export imported.
type chainLink struct {
	Manifest  string    `json:"manifest"` // its path
	Since     string    `json:"since,omitempty"`
	Watermark string    `json:"watermark"`
	Import    string    `json:"import"` // the import's id
	Target    string    `json:"target"` // the target database, for people
	Time      time.Time `json:"time"`   // when the import finished
}

// OrderError is an export imported out of the order of its chain: exit 1.
//
// Its message says what to import first; the way to import it anyway is
// the caller's to say.
type OrderError struct{ msg string }

func (e *OrderError) Error() string { return e.msg }

// Order is the order check of one import: made by CheckOrder, it records
// the export once the import has finished.
type Order struct {
	store  Store
	m      *Manifest
	ext    bulkdata.Ext
	target pg.Identity
}

// CheckOrder checks, if m is an export of a fhirbulk chain, that it comes
// next in its chain for the database target (see above; refusals are
// *OrderError), unless !check. The *Order it returns (nil when m is no
// such export) records the export with Record.
func CheckOrder(s Store, m *Manifest, target pg.Identity, check bool) (*Order, error) {
	if m.Export == nil || m.Export.Database == nil || m.Export.Watermark == "" {
		return nil, nil
	}
	o := &Order{store: s, m: m, ext: *m.Export, target: target}
	if check {
		if err := o.check(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// check is CheckOrder's verdict.
func (o *Order) check() error {
	e := o.ext
	if e.Since == "" {
		return nil
	}
	c, err := o.store.readChains()
	if err != nil {
		return err
	}
	name := exportName(o.m.Path)
	first := "the export it follows (whose watermark is " + e.Since + ")"
	if e.Follows != "" {
		first = exportName(e.Follows) + ", the export it follows"
	}
	last, ok := c.Targets[o.target.Key()][o.chainKey()]
	if !ok {
		return &OrderError{fmt.Sprintf("%s is an incremental export (changes since %s) and nothing of its chain was imported into this database: import first %s",
			name, e.Since, first)}
	}
	since, err1 := bulkdata.ParseTime(e.Since)
	mark, err2 := bulkdata.ParseTime(e.Watermark)
	lastMark, err3 := bulkdata.ParseTime(last.Watermark)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case e.Since == last.Since && e.Watermark == last.Watermark:
		return nil // the last one imported, again: nothing changes
	case since.After(lastMark):
		return &OrderError{fmt.Sprintf("%s goes on from watermark %s, but the last export of its chain imported into this database, %s, ends at %s: an export in between is missing; import first %s",
			name, e.Since, exportName(last.Manifest), last.Watermark, first)}
	case !mark.After(lastMark):
		return &OrderError{fmt.Sprintf("%s (watermark %s) is older than %s (watermark %s), imported into this database already: it would revert what changed since",
			name, e.Watermark, exportName(last.Manifest), last.Watermark)}
	}
	return nil
}

// Record remembers that import id of the export has finished: the next
// export of its chain may come. A nil *Order records nothing.
func (o *Order) Record(id string) error {
	if o == nil {
		return nil
	}
	unlock, err := o.store.lockChains()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := o.store.readChains()
	if err != nil {
		return err
	}
	key := o.target.Key()
	if c.Targets[key] == nil {
		c.Targets[key] = map[string]chainLink{}
	}
	c.Targets[key][o.chainKey()] = chainLink{Manifest: o.m.Path, Since: o.ext.Since, Watermark: o.ext.Watermark,
		Import: id, Target: o.target.String(), Time: time.Now().UTC()}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(o.store.Dir, chainsFile)
	if err := fsutil.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fsutil.FileError("state file", path, err)
	}
	return nil
}

// chainKey names the chain of the export: the database exported (as its
// identity's Key) and the types (a chain keeps one set of types).
func (o *Order) chainKey() string {
	d := o.ext.Database
	src := pg.Identity{SystemID: d.SystemIdentifier, Database: d.Name, OID: d.OID, Host: d.Host, Port: d.Port}
	types := "*"
	if len(o.ext.Types) > 0 {
		types = strings.Join(o.ext.Types, ",")
	}
	return src.Key() + " " + types
}

// readChains reads chainsFile (empty when there is none).
func (s Store) readChains() (*chains, error) {
	c := &chains{Targets: map[string]map[string]chainLink{}}
	path := filepath.Join(s.Dir, chainsFile)
	data, err := readStateFile(path, bulkdata.MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("state file %s: %v (delete it to forget which exports were imported)", path, err)
	}
	if c.Targets == nil {
		c.Targets = map[string]map[string]chainLink{}
	}
	return c, nil
}

// readStateFile reads a file of the state folder whole, at most limit
// bytes (see openState); a missing one is an error wrapping
// fs.ErrNotExist.
func readStateFile(path string, limit int64) ([]byte, error) {
	f, err := openState(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fsutil.FileError("state file", path, err)
	}
	return data, nil
}

// lockChains takes the lock of chainsFile, held for a read and a write:
// two imports that end at once both record.
func (s Store) lockChains() (unlock func(), err error) { return s.lockNamed(".import-chains.lock") }

// lockNamed takes the lock file name of the state folder, waiting up to
// about 10s for another process to drop it.
func (s Store) lockNamed(name string) (unlock func(), err error) {
	if err := s.mkdir(); err != nil {
		return nil, err
	}
	path := filepath.Join(s.Dir, name)
	for wait := time.Millisecond; ; wait *= 2 {
		f, err := lockFile(path)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, ErrRunning) {
			return nil, err
		}
		if wait > 5*time.Second {
			return nil, fmt.Errorf("state file %s: held by another import for more than 10s", path)
		}
		time.Sleep(wait)
	}
}

// exportName is how a message names an export: its folder, when its
// manifest is the folder's manifest.json (what one gives import).
func exportName(path string) string {
	if path == "" {
		return "the export (a manifest on stdin)"
	}
	if loc, err := bucket.Parse(path); err == nil {
		if strings.HasSuffix(loc.Key, "/manifest.json") || loc.Key == "manifest.json" {
			loc.Key = strings.TrimSuffix(loc.Key, "manifest.json")
		}
		return loc.String()
	}
	if filepath.Base(path) == "manifest.json" {
		return filepath.Dir(path)
	}
	return path
}
