package bulkdata

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// URLError is a manifest's url that names nothing fhirbulk reads.
type URLError struct {
	URL    string // as given, redacted; "" when there is none
	Reason string
	// Outside: it names a local file outside the manifest's folder, which
	// only an allowOutside resolution reads.
	Outside bool
}

func (e *URLError) Error() string {
	if e.URL == "" {
		return e.Reason
	}
	return "url " + e.URL + ": " + e.Reason
}

// ResolveURL is what a manifest's url reads: a URL source.Open reads
// (http(s), s3, gs, azblob) as it is; anything else is a URL reference,
// resolved as RFC 3986 resolves it against the manifest's own URL.
//
// A manifest in a local folder (dir a path: file:///DIR/manifest.json)
// names a local file, returned as a path:
//
//   - a relative reference (Patient.ndjson, ./data/a%20b.ndjson, ../x) is
//     resolved against dir (absolute), percent-decoded;
//   - an absolute path (/data/x.ndjson) is itself, percent-decoded;
//   - a file: URL in any of its standard forms, file:///PATH, file:/PATH
//     and file://localhost/PATH, is PATH, percent-decoded.
//
// A manifest in a bucket (dir a bucket URL of a prefix, s3://B/export/,
// its endpoint= and region= included) names an object of that bucket: a
// relative reference is resolved against the prefix, an absolute path
// (/x.ndjson) against the bucket's root, each returned as a bucket URL
// with the prefix's endpoint= and region=; a file: URL is a local file,
// which is outside its folder.
//
// Refused (a *URLError): other schemes (ftp:), file: URLs of another host
// or without an absolute path, network-path references (//host/x), and a
// query or fragment, which no file has (%3F and %23 spell ? and # in a
// name). Unless allowOutside, the file must be inside dir once ".." and
// (locally) the symbolic links of the path (those that exist) are
// resolved, and an object inside the prefix once ".." is: a manifest,
// which may come from anywhere, cannot make its reader read a file it was
// not shipped with.
func ResolveURL(raw, dir string, allowOutside bool) (string, error) {
	if raw == "" {
		return "", &URLError{Reason: "no url"}
	}
	if source.IsURL(raw) {
		return raw, nil
	}
	shown := source.Redact(raw)
	refuse := func(format string, args ...any) error {
		return &URLError{URL: shown, Reason: fmt.Sprintf(format, args...)}
	}
	var base *bucket.Location
	if bucket.Is(dir) {
		l, err := bucket.Parse(dir)
		if err != nil {
			return "", fmt.Errorf("the manifest's folder %s: %w", source.Redact(dir), err)
		}
		l.Key = l.Dir()
		base = &l
	}
	var path string
	if base == nil && runtime.GOOS == "windows" && filepath.VolumeName(raw) != "" {
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
			case strings.Contains(strings.SplitN(raw, "/", 2)[0], ":"):
				// url.Parse's "first path segment in URL cannot contain colon"
				hint = " (a name with ':' is written ./NAME)"
			}
			return "", refuse("not a URL or path: %v%s", err, hint)
		}
		switch scheme := strings.ToLower(u.Scheme); {
		case scheme == "" && u.Host != "":
			return "", refuse("a network path (//HOST/...): only http(s), s3, gs and azblob URLs and local paths")
		case scheme == "file":
			if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
				return "", refuse("a file: URL takes an absolute path (file:///PATH)")
			}
			if u.User != nil || (u.Host != "" && !strings.EqualFold(u.Host, "localhost")) {
				return "", refuse("a file: URL of another host")
			}
		case scheme != "":
			return "", refuse("only http(s), s3, gs and azblob URLs and local paths")
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(raw, "#") {
			if base != nil && u.Scheme == "" {
				return "", refuse("a relative url has no query or fragment (write ? as %%3F, # as %%23)")
			}
			return "", refuse("a local file's url has no query or fragment (write ? as %%3F, # as %%23)")
		}
		if u.Path == "" {
			return "", refuse("no path")
		}
		if base != nil && u.Scheme == "" {
			return resolveKey(u.Path, *base, allowOutside, shown)
		}
		path = filepath.FromSlash(u.Path)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	path = filepath.Clean(path)
	if base != nil && !allowOutside {
		return "", &URLError{URL: shown, Reason: fmt.Sprintf("%s is a local file, outside the manifest's folder %s", path, base), Outside: true}
	}
	if base == nil && !allowOutside && !inside(dir, path) {
		return "", &URLError{URL: shown, Reason: fmt.Sprintf("%s is outside the manifest's folder %s", path, dir), Outside: true}
	}
	return path, nil
}

// resolveKey resolves a reference's path (percent-decoded) against the
// prefix base of a bucket: the object's URL, refused when it leaves the
// prefix (unless allowOutside) or names no object.
func resolveKey(ref string, base bucket.Location, allowOutside bool, shown string) (string, error) {
	if !strings.HasPrefix(ref, "/") {
		ref = "/" + base.Key + ref
	}
	loc := base
	loc.Key = strings.TrimPrefix(path.Clean(ref), "/")
	if loc.Key == "" || loc.Key+"/" == base.Key {
		return "", &URLError{URL: shown, Reason: "names the manifest's folder, not an object"}
	}
	if !allowOutside && !strings.HasPrefix(loc.Key, base.Key) {
		return "", &URLError{URL: shown, Reason: fmt.Sprintf("%s is outside the manifest's folder %s", loc, base), Outside: true}
	}
	return loc.URL(), nil
}

// inside reports whether path is inside dir (or is dir), both taken as
// they really are: with ".." and the symbolic links that exist resolved.
// (A link created or changed after this check is not seen: the check is
// about what a manifest names, not a guard against a race on one's own
// disk.)
func inside(dir, path string) bool {
	rel, err := filepath.Rel(RealPath(dir), RealPath(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// RealPath is path made absolute, with the symbolic links of its longest
// existing prefix resolved and the rest (which does not exist) appended as
// it is: where a manifest's file really is, and how a manifest records
// the one it follows (Ext.Follows). A file:///PATH URL is PATH; a
// bucket's URL is itself as it may be shown (Location.String: no query,
// so no endpoint=, which a manifest read elsewhere has no use for).
func RealPath(path string) string {
	if bucket.Is(path) {
		if loc, err := bucket.Parse(path); err == nil {
			return loc.String()
		}
		return source.Redact(path)
	}
	if source.URLScheme(path) == "file" {
		if p, err := source.FilePath(path); err == nil {
			path = p
		}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
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
