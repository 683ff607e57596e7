package bucket

import (
	"context"
	"io"
	"net/url"
	"strings"

	"gocloud.dev/blob"
)

// URL is l as a URL that Parse reads back as l: its key percent-escaped
// where a URL needs it (a space, '?', '#', '%'), and its endpoint= and
// region= kept (the only parameters Parse takes, neither a secret), so a
// URL made from another (a manifest's file, a prefix's object) reaches
// the same store. String is the form to show.
func (l Location) URL() string {
	u := url.URL{Scheme: l.Scheme, Host: l.Bucket, Path: "/" + l.Key}
	q := url.Values{}
	if l.Endpoint != "" {
		q.Set("endpoint", l.Endpoint)
	}
	if l.Region != "" {
		q.Set("region", l.Region)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Entry is one name directly under a prefix: an object, or a deeper
// prefix (Dir: a "folder", named without its trailing "/").
type Entry struct {
	Name string
	Dir  bool
	Size int64
}

// List lists what is directly under the prefix l.Dir() of b, as a folder's
// entries (delimiter "/"): objects and deeper prefixes, each named
// relative to the prefix, in the store's order (by key). An object whose
// key is the prefix itself (the empty "folder" a console creates) is not
// listed. A prefix with nothing under it lists nothing: object stores
// have no folders to be missing. Errors are Describe's, for OpList.
func List(ctx context.Context, b *blob.Bucket, l Location) ([]Entry, error) {
	prefix := l.Dir()
	it := b.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var out []Entry
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, Describe(err, OpList, l)
		}
		name := strings.TrimPrefix(obj.Key, prefix)
		if obj.IsDir {
			name = strings.TrimSuffix(name, "/")
		}
		if name == "" {
			continue
		}
		out = append(out, Entry{Name: name, Dir: obj.IsDir, Size: obj.Size})
	}
}
