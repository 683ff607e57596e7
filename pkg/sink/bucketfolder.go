package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// A folder in a bucket (a prefix: s3://BUCKET/PREFIX/) cannot be renamed
// into place, so it is published by its manifest instead: a reader that
// waits for PREFIX/manifest.json never sees half an export.
//
//  1. OpenFolder writes a marker, PREFIX/.fhirbulk-export (a run id, who
//     writes, since when), only if absent: two exports to one prefix
//     cannot both run, and the marker a killed run leaves tells the next
//     what the objects beside it are.
//  2. Each data object is uploaded whole (a multipart upload, completed by
//     its Commit).
//  3. Commit writes manifest.json last (only if absent, unless force), then
//     removes the marker.
//  4. Abort (a failure, Ctrl-C) aborts the uploads in flight and deletes
//     what was written, the marker last.
//
// A run acts on the prefix only while the marker is its own: another
// run's --force takes the prefix over, and the run it took it from then
// publishes nothing and deletes nothing.
//
// With force an earlier export at the prefix is replaced: its manifest is
// deleted just before the first object is written (it must not list
// objects being overwritten; a run that fails before that leaves the
// earlier export as it was), and its objects that the new export does not
// write are deleted before the new manifest is written: only objects
// directly under the prefix, named as an export's files are. A failed
// forced export that had begun to overwrite leaves no export there, and
// its marker beside what is left of the earlier one, so that the next run
// names it and --force replaces it.

// Marker is the name of the object that says an export is being written
// at a prefix (or was, by a run that was killed).
const Marker = bulkdata.MarkerName

// marker is what the Marker object holds.
type marker struct {
	Run     string `json:"run"` // random: which run the marker is
	Started string `json:"started"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
}

// FolderOptions says how a folder is written.
type FolderOptions struct {
	// Force replaces an earlier export (or a folder or prefix that is
	// empty), only once the new one is complete where the store allows it
	// (a local folder; see bucketfolder.go for a prefix).
	Force bool
	// Context, for a prefix in a bucket: cancelling it aborts the uploads.
	Context context.Context
	Upload  Upload // for a prefix in a bucket
}

// ErrUnfinished is returned (wrapped) by OpenFolder for a prefix where an
// export is being written, or was by a run that was killed.
var ErrUnfinished = errors.New("holds an unfinished export")

// Signer is a Folder that can make pre-signed URLs of its objects.
type Signer interface {
	// SignedURL is a URL that reads the object name (of Create) without
	// credentials until ttl has passed.
	SignedURL(name string, ttl time.Duration) (string, error)
}

var (
	_ Folder = (*bucketFolder)(nil)
	_ Signer = (*bucketFolder)(nil)
)

type bucketFolder struct {
	ctx   context.Context
	b     *blob.Bucket
	loc   bucket.Location // the prefix: Key is "" or ends in "/"
	force bool
	up    Upload
	close func() // closes b, when the folder opened it
	run   string // this run's id, in its marker

	// oldManifest: an earlier export's manifest was there; manifestGone:
	// this run deleted it (just before its first object). hadMarker: a
	// killed run's leftovers were there. With either of the last two, an
	// Abort keeps the marker beside what is left.
	oldManifest, manifestGone, hadMarker bool

	mu      sync.Mutex
	written []string // keys uploads were started for, to delete on Abort
	done    bool
}

// openBucketFolder opens the prefix raw names.
func openBucketFolder(raw string, o FolderOptions) (*bucketFolder, error) {
	loc, err := bucket.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", source.Redact(raw), err)
	}
	loc.Key = loc.Dir()
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	b, err := bucket.Open(ctx, loc, bucket.Options{})
	if err != nil {
		return nil, outputError(loc, err)
	}
	f, err := newBucketFolder(ctx, b, loc, o)
	if err != nil {
		b.Close()
		return nil, err
	}
	f.close = func() { b.Close() }
	return f, nil
}

// newBucketFolder starts an export at the prefix loc of b: checks what is
// there, and claims the prefix with the marker.
func newBucketFolder(ctx context.Context, b *blob.Bucket, loc bucket.Location, o FolderOptions) (*bucketFolder, error) {
	f := &bucketFolder{ctx: ctx, b: b, loc: loc, force: o.Force, up: o.Upload, run: runID()}
	state, err := f.look()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	switch m := state.marker; {
	case m != nil && m.Host == host && m.PID != os.Getpid() && fsutil.ProcessAlive(m.PID):
		return nil, fmt.Errorf("output %s is being written by process %d on this host (since %s): wait for it, or stop it first", loc, m.PID, m.Started)
	case m != nil && !o.Force:
		return nil, fmt.Errorf("output %s %w (started %s on %s, process %d): --force deletes it and writes a new one", loc, ErrUnfinished, m.Started, m.Host, m.PID)
	case state.manifest && !o.Force, state.objects && !o.Force:
		return nil, &ExistsError{Path: loc.String()}
	case state.objects && !state.manifest && m == nil:
		return nil, fmt.Errorf("output %s is %w", loc, ErrNotExport)
	}
	data, _ := json.Marshal(marker{Run: f.run, Started: time.Now().UTC().Format(time.RFC3339), Host: host, PID: os.Getpid()})
	if err := f.put(Marker, data, !o.Force); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, fmt.Errorf("output %s %w: another export started writing it just now", loc, ErrUnfinished)
		}
		return nil, err
	}
	f.oldManifest, f.hadMarker = state.manifest, state.marker != nil
	if state.marker != nil {
		abortUploads(ctx, b, loc) // a killed run's parts
	}
	return f, nil
}

// runID is a random id for a run's marker.
func runID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errTakenOver is the marker found another run's, or gone.
var errTakenOver = errors.New("another export took the prefix over (--force) while this one ran: this one is not published")

// ownMarker says whether the prefix's marker is still this run's (nil),
// not (errTakenOver: another run's --force took the prefix over, or it
// was deleted), or cannot be read (why).
func (f *bucketFolder) ownMarker(ctx context.Context) error {
	data, err := f.b.ReadAll(ctx, f.loc.Key+Marker)
	switch {
	case bucket.IsNotFound(err):
		return errTakenOver
	case err != nil:
		return fmt.Errorf("output %s: %w", f.loc, bucket.Describe(err, bucket.OpRead, f.loc))
	}
	var m marker
	if json.Unmarshal(data, &m) != nil || m.Run != f.run {
		return errTakenOver
	}
	return nil
}

// dropOldManifest deletes the earlier export's manifest, once, before the
// first of its objects may be overwritten: from then on it is no export.
// Called with f.mu held.
func (f *bucketFolder) dropOldManifest() error {
	if !f.oldManifest || f.manifestGone {
		return nil
	}
	if err := f.delete(Manifest); err != nil {
		return err
	}
	f.manifestGone = true
	return nil
}

// prefixState is what is at a prefix before an export is written there.
type prefixState struct {
	manifest bool    // PREFIX/manifest.json
	marker   *marker // PREFIX/.fhirbulk-export, read
	objects  bool    // any other object under the prefix
}

func (f *bucketFolder) look() (prefixState, error) {
	var st prefixState
	// Anything else there, an object here or deeper? A few entries tell,
	// however large the prefix. (No delimiter: some S3-compatible stores
	// sign-check a "/" in the query wrongly.) First: a refused list says
	// why, where a refused HEAD cannot.
	it := f.b.List(&blob.ListOptions{Prefix: f.loc.Key})
	for n := 0; n < 3; n++ {
		obj, err := it.Next(f.ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("output %s: %w", f.loc, bucket.Describe(err, bucket.OpList, f.loc))
		}
		if obj.Key != f.loc.Key+Manifest && obj.Key != f.loc.Key+Marker {
			st.objects = true
			break
		}
	}
	ok, err := f.b.Exists(f.ctx, f.loc.Key+Manifest)
	if err != nil {
		return st, fmt.Errorf("output %s: %w", f.loc, bucket.Describe(err, bucket.OpStat, f.loc))
	}
	st.manifest = ok
	if data, err := f.b.ReadAll(f.ctx, f.loc.Key+Marker); err == nil {
		st.marker = &marker{Started: "?", Host: "?"}
		json.Unmarshal(data, st.marker) // unreadable: the question marks say so
	} else if !bucket.IsNotFound(err) {
		return st, fmt.Errorf("output %s: %w", f.loc, bucket.Describe(err, bucket.OpRead, f.loc))
	}
	return st, nil
}

func (f *bucketFolder) closeBucket() {
	if f.close != nil {
		f.close()
		f.close = nil
	}
}

// abortUploads aborts the multipart uploads a killed run left under the
// prefix loc (S3 keeps their parts, and bills them, until aborted; GCS
// and Azure drop uncommitted uploads by themselves within a week).
func abortUploads(ctx context.Context, b *blob.Bucket, loc bucket.Location) {
	var c *s3.Client
	if !b.As(&c) {
		return
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(loc.Bucket), Prefix: aws.String(loc.Key)}
	for {
		out, err := c.ListMultipartUploads(ctx, in)
		if err != nil {
			return // best effort: the store's lifecycle rules are the backstop
		}
		for _, u := range out.Uploads {
			// Only the prefix's own objects: not a nested export's.
			if strings.Contains(strings.TrimPrefix(aws.ToString(u.Key), loc.Key), "/") {
				continue
			}
			c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(loc.Bucket), Key: u.Key, UploadId: u.UploadId})
		}
		if !aws.ToBool(out.IsTruncated) {
			return
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// Path is the prefix's URL.
func (f *bucketFolder) Path() string { return f.loc.String() }

// Create starts the upload of the object name under the prefix.
func (f *bucketFolder) Create(name string, gzip bool) (Destination, error) {
	if err := checkName(f.Path(), name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return nil, errors.New("folder already closed")
	}
	if err := f.dropOldManifest(); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.written = append(f.written, f.loc.Key+name)
	f.mu.Unlock()
	loc := f.loc.Child(name)
	o, err := startUpload(f.ctx, f.b, loc, gzip, true, f.up)
	if err != nil {
		return nil, err
	}
	s := &Sink{obj: o, path: loc.String(), opts: Options{Gzip: gzip}}
	if err := s.layer(o); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// checkName refuses a name that is not a plain file name of a folder.
func checkName(folder, name string) error {
	switch {
	case name == Manifest:
		return fmt.Errorf("output %s: bad file name %q (the manifest is written by Commit)", folder, name)
	case name == "" || name == Marker || name == folderLock || name == "." || name == ".." || containsSlash(name):
		return fmt.Errorf("output %s: bad file name %q", folder, name)
	}
	return nil
}

func containsSlash(s string) bool {
	return slices.Contains([]byte(s), '/') || slices.Contains([]byte(s), '\\')
}

// Commit deletes what an earlier export left that this one did not write
// (force), writes the manifest, last, and removes the marker.
func (f *bucketFolder) Commit(manifest []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return errors.New("folder already closed")
	}
	f.done = true
	defer f.closeBucket()
	if err := f.ownMarker(f.ctx); err == errTakenOver {
		return fmt.Errorf("output %s: %w", f.loc, err)
	} else if err != nil {
		f.abort()
		return err
	}
	if err := f.dropOldManifest(); err != nil {
		f.abort()
		return err
	}
	if f.force {
		if err := f.deleteStrays(); err != nil {
			f.abort()
			return err
		}
	}
	if manifest != nil {
		if err := f.put(Manifest, manifest, !f.force); err != nil {
			f.abort()
			return err
		}
	}
	// The export is complete (even if Ctrl-C came just now): a marker that
	// cannot be deleted only makes the next export to this prefix ask for
	// --force.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), time.Minute)
	defer cancel()
	f.b.Delete(ctx, f.loc.Key+Marker)
	return nil
}

// deleteStrays deletes the objects directly under the prefix, named as an
// export's files are, that this export did not write: an earlier export's
// (with force). Deeper prefixes and other objects are not an export's.
func (f *bucketFolder) deleteStrays() error {
	it := f.b.List(&blob.ListOptions{Prefix: f.loc.Key}) // no delimiter: see look

	for {
		obj, err := it.Next(f.ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("output %s: %w", f.loc, bucket.Describe(err, bucket.OpList, f.loc))
		}
		name := obj.Key[len(f.loc.Key):]
		if _, ok := bulkdata.ParseName(name); !ok || strings.Contains(name, "/") || slices.Contains(f.written, obj.Key) {
			continue
		}
		if err := f.delete(obj.Key[len(f.loc.Key):]); err != nil {
			return err
		}
	}
}

// Abort aborts the uploads in flight (their Sinks) and deletes every
// object this export wrote, the marker last.
func (f *bucketFolder) Abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.done = true
	defer f.closeBucket()
	f.abort()
}

func (f *bucketFolder) abort() {
	// Not f.ctx: it may be the cancelled context the export stopped for.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), time.Minute)
	defer cancel()
	if f.ownMarker(ctx) != nil {
		// Another run took the prefix over (or the marker cannot be read):
		// what this run wrote may be that run's now.
		return
	}
	failed := false
	for _, key := range f.written {
		if err := f.b.Delete(ctx, key); err != nil && !bucket.IsNotFound(err) {
			failed = true
		}
	}
	if !failed && !f.manifestGone && !f.hadMarker {
		// Kept when anything is left: it names the leftovers to the next
		// run (an earlier export's objects, its manifest gone, among them).
		f.b.Delete(ctx, f.loc.Key+Marker)
	}
}

// put writes data as the object name under the prefix, only if absent
// when ifNotExist.
func (f *bucketFolder) put(name string, data []byte, ifNotExist bool) error {
	loc := f.loc.Child(name)
	w, err := startUpload(f.ctx, f.b, loc, false, !ifNotExist, f.up)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.abort()
		return err
	}
	return w.commit()
}

// delete deletes the object name under the prefix (gone already is fine).
func (f *bucketFolder) delete(name string) error {
	loc := f.loc.Child(name)
	if err := f.b.Delete(f.ctx, loc.Key); err != nil && !bucket.IsNotFound(err) {
		return fmt.Errorf("output %s: %w", loc, bucket.Describe(err, bucket.OpDelete, loc))
	}
	return nil
}

// SignedURL is a pre-signed GET URL of the object name, valid for ttl.
func (f *bucketFolder) SignedURL(name string, ttl time.Duration) (string, error) {
	loc := f.loc.Child(name)
	u, err := f.b.SignedURL(f.ctx, loc.Key, &blob.SignedURLOptions{Expiry: ttl, Method: "GET"})
	if gcerrors.Code(err) == gcerrors.Unimplemented {
		why := "the credentials hold no key to sign with"
		switch loc.Scheme {
		case "gs":
			why += " (GCS signs with a service account's key: GOOGLE_APPLICATION_CREDENTIALS naming its key file)"
		case "azblob":
			why += " (Azure signs with the account's key: AZURE_STORAGE_KEY)"
		}
		return "", fmt.Errorf("sign a URL of %s: %s", loc, why)
	}
	if err != nil {
		return "", fmt.Errorf("sign a URL of %s: %w", loc, bucket.Describe(err, bucket.OpRead, loc))
	}
	return u, nil
}
