package bulkimport

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/source"
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

// resolveURL is what a manifest's url (at names it in errors) reads: an
// http(s) URL as it is; anything else is a URL reference that names a
// local file, as RFC 3986 resolves it against the manifest's own URL
// (file:///DIR/manifest.json) and returns it as a path:
//
//   - a relative reference (Patient.ndjson, ./data/a%20b.ndjson, ../x) is
//     resolved against Dir, percent-decoded;
//   - an absolute path (/data/x.ndjson) is itself, percent-decoded;
//   - a file: URL in any of its standard forms, file:///PATH, file:/PATH
//     and file://localhost/PATH, is PATH, percent-decoded.
//
// Refused: other schemes (s3://, ftp:), file: URLs of another host or
// without an absolute path, network-path references (//host/x), and a
// query or fragment, which no file has (%3F and %23 spell ? and # in a
// name). Unless w.AllowOutside, the file must be inside Dir once ".." and
// the symbolic links of the path (those that exist) are resolved.
func resolveURL(raw string, w Where, at string) (string, error) {
	if raw == "" {
		return "", manifestErr("%s: no url", at)
	}
	if source.IsURL(raw) {
		return raw, nil
	}
	shown := source.Redact(raw)
	var path string
	if runtime.GOOS == "windows" && filepath.VolumeName(raw) != "" {
		path = raw // C:\data\x.ndjson: a path, not a URL of scheme "c"
	} else {
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			hint := ""
			var ee url.EscapeError
			switch {
			case errors.As(err, &ee):
				hint = " (a '%' in a name is written %25)"
			case strings.Contains(err.Error(), "colon"):
				hint = " (a name with ':' is written ./NAME)"
			}
			return "", manifestErr("%s.url %s: not a URL or path: %v%s", at, shown, err, hint)
		}
		switch scheme := strings.ToLower(u.Scheme); {
		case scheme == "" && u.Host != "":
			return "", manifestErr("%s.url %s: a network path (//HOST/...): only http(s) URLs and local paths", at, shown)
		case scheme == "file":
			if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
				return "", manifestErr("%s.url %s: a file: URL takes an absolute path (file:///PATH)", at, shown)
			}
			if u.User != nil || (u.Host != "" && !strings.EqualFold(u.Host, "localhost")) {
				return "", manifestErr("%s.url %s: a file: URL of another host", at, shown)
			}
		case scheme != "":
			return "", manifestErr("%s.url %s: only http(s) URLs and local paths", at, shown)
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(raw, "#") {
			return "", manifestErr("%s.url %s: a local file's url has no query or fragment (write ? as %%3F, # as %%23)", at, shown)
		}
		if u.Path == "" {
			return "", manifestErr("%s.url %s: no path", at, shown)
		}
		path = filepath.FromSlash(u.Path)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(w.Dir, path)
	}
	path = filepath.Clean(path)
	if !w.AllowOutside && !inside(w.Dir, path) {
		return "", manifestErr("%s.url %s: %s is outside the manifest's folder %s (--allow-outside to read it)", at, shown, path, w.Dir)
	}
	return path, nil
}

// inside reports whether path is inside dir (or is dir), both taken as
// they really are: with ".." and the symbolic links that exist resolved.
// (A link created or changed after this check is not seen: the check is
// about what a manifest names, not a guard against a race on one's own
// disk.)
func inside(dir, path string) bool {
	rel, err := filepath.Rel(realPath(dir), realPath(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// realPath is path with the symbolic links of its longest existing prefix
// resolved, and the rest (which does not exist) appended as it is.
func realPath(path string) string {
	p, rest := filepath.Clean(path), ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		if _, err := os.Lstat(p); err == nil {
			// It exists but cannot be resolved (a dangling link, a loop,
			// a folder on the way that may not be read): compared as
			// written, it still names a file in the folder it is in.
			if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
				return filepath.Join(r, filepath.Base(p), rest)
			}
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
