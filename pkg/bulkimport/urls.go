package bulkimport

import (
	"errors"
	"fmt"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
)

// Where is where a manifest was read from, which its urls are resolved
// against.
type Where struct {
	Dir  string // the folder relative urls are resolved against (absolute)
	Path string // the manifest's absolute path; "" for stdin
	// AllowOutside lets the manifest's urls name local files outside Dir
	// (import --allow-outside). Without it a manifest, which may come from
	// anywhere, cannot make import read (into a database, where its owner
	// may read it back) a file of the user's that it was not shipped with.
	AllowOutside bool
}

// resolveURL is what a manifest's url (at names it in errors) reads, as
// bulkdata.ResolveURL resolves it against w.Dir; its refusals are
// *ManifestError.
func resolveURL(raw string, w Where, at string) (string, error) {
	path, err := bulkdata.ResolveURL(raw, w.Dir, w.AllowOutside)
	var ue *bulkdata.URLError
	switch {
	case err == nil:
		return path, nil
	case !errors.As(err, &ue):
		return "", err
	case ue.URL == "":
		return "", manifestErr("%s: %v", at, err)
	case ue.Outside:
		return "", &ManifestError{msg: fmt.Sprintf("manifest: %s.%v", at, err), Outside: true}
	}
	return "", manifestErr("%s.%v", at, err)
}
