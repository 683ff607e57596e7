package bulkimport

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"gocloud.dev/blob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// ReadBucket reads a bulk export in a bucket (s3://, gs://, azblob://), as
// ReadFolder reads one in a folder, or a manifest object. spec names:
//
//   - a prefix (s3://B/export/, or s3://B/export when no object has that
//     key but some are under export/): its manifest.json when it has one,
//     else its objects named as a folder's data files are (Type.ndjson,
//     deleted.Type.ndjson.gz, ...: see ReadFolder), read from their URLs;
//     a deeper prefix with such a name is refused, as a folder is in a
//     folder, and one with nothing under it is a *ManifestError, as an
//     empty folder is;
//   - any other key: a manifest object (HL7's or fhirbulk's own).
//
// A manifest's relative urls name objects of its prefix (see
// bulkdata.ResolveURL), which they must not leave unless allowOutside.
// The manifest's and its inputs' URLs keep spec's endpoint= and region=.
// It returns the manifest's bytes too (nil for a prefix without one).
// Failures of the store are one line naming the URL (bucket.Describe);
// the bucket is opened with the cloud's standard credentials.
func ReadBucket(ctx context.Context, spec string, allowOutside bool) (*Manifest, []byte, error) {
	loc, err := bucket.Parse(spec)
	if err != nil {
		return nil, nil, manifestErr("%s: %v", source.Redact(spec), err)
	}
	b, err := bucket.Open(ctx, loc, bucket.Options{})
	if err != nil {
		return nil, nil, objectErr(ctx, loc, bucket.Describe(err, bucket.OpRead, loc))
	}
	defer b.Close()
	if !loc.Prefix() {
		data, err := readObject(ctx, b, loc)
		if err == nil {
			return parseObject(data, loc, allowOutside)
		}
		if !bucket.IsNotFound(err) {
			return nil, nil, objectErr(ctx, loc, err)
		}
		// No object of that key: the prefix KEY/, if anything is under it.
		dir := loc
		dir.Key += "/"
		return readPrefix(ctx, b, dir, allowOutside, objectErr(ctx, loc, err))
	}
	return readPrefix(ctx, b, loc, allowOutside, nil)
}

// readPrefix reads the export under the prefix dir (see ReadBucket); a
// prefix with nothing under it is missing when that is not nil.
func readPrefix(ctx context.Context, b *blob.Bucket, dir bucket.Location, allowOutside bool, missing error) (*Manifest, []byte, error) {
	mloc := dir.Child(bulkdata.ManifestName)
	data, err := readObject(ctx, b, mloc)
	switch {
	case err == nil:
		return parseObject(data, mloc, allowOutside)
	case !bucket.IsNotFound(err):
		return nil, nil, objectErr(ctx, mloc, err)
	}
	entries, err := bucket.List(ctx, b, dir)
	if err != nil {
		return nil, nil, objectErr(ctx, dir, err)
	}
	if len(entries) == 0 && missing != nil {
		return nil, nil, missing
	}
	var folders, names []string
	for _, e := range entries {
		switch {
		case e.Name == bulkdata.MarkerName && !e.Dir:
			// fhirbulk export is writing there, or was killed: half an
			// export, whose manifest is not there yet.
			return nil, nil, &UnfinishedError{Prefix: dir.String()}
		case !isDataName(e.Name):
		case e.Dir:
			folders = append(folders, e.Name+"/")
		default:
			names = append(names, e.Name)
		}
	}
	if len(folders) > 0 {
		sort.Strings(folders)
		return nil, nil, manifestErr("%s: not an object but a prefix (a folder): %s", dir, strings.Join(folders, ", "))
	}
	m, err := folderManifest(dir.String(), names, func(name string) string { return dir.Child(name).URL() })
	if err != nil {
		return nil, nil, err
	}
	m.Path, m.Dir = dir.URL(), dir.URL()
	return m, nil, nil
}

// UnfinishedError is a prefix where an export is being written, or was
// by a run that was killed: it has no manifest yet, and is not read.
type UnfinishedError struct{ Prefix string }

func (e *UnfinishedError) Error() string {
	return e.Prefix + ": an export is being written there (or was, by a run that was killed): no " + bulkdata.ManifestName + " yet"
}

// parseObject parses the manifest read from the object loc: HL7's, else
// fhirbulk's own, its urls resolved against loc's prefix.
func parseObject(data []byte, loc bucket.Location, allowOutside bool) (*Manifest, []byte, error) {
	dir := loc
	dir.Key = loc.Key[:strings.LastIndex(loc.Key, "/")+1]
	w := Where{Dir: dir.URL(), Path: loc.URL(), AllowOutside: allowOutside}
	var m *Manifest
	var err error
	if bulkdata.IsManifest(data) {
		m, err = ParseHL7(data, w)
	} else {
		m, err = ParseManifest(data, w)
	}
	return m, data, err
}

// readObject is bulkdata.ReadObject: a manifest's object read whole, bounded.
var readObject = bulkdata.ReadObject

// objectErr is a failure to read loc, said as a local manifest's is
// ("manifest PATH: ..."), or the end of ctx.
func objectErr(ctx context.Context, loc bucket.Location, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("manifest %s: %w", loc, err)
}
