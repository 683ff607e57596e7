// Package sink is where exports go, each a Destination chosen by its target
// (Open, OpenFolder): stdout, a file that appears only when complete, or a
// folder of such files that appears whole (folder.go). A file is written
// under a temporary name beside its final path and moved into place by
// Commit, so a reader (a cron job, a loader polling a folder) never sees a
// truncated export; Abort removes the temporary file.
//
// Only a regular file is ever created or replaced: a folder, a named pipe, a
// device, a socket or a symbolic link at the final path is refused, with or
// without Force. A writer holds a lock on its temporary file while it
// writes (where the platform has flock), so a later Open for the same path
// can tell the temporary files of killed runs from those of live ones and
// removes the former (fsutil.CreateTemp, fsutil.RemoveStaleTemps).
package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/klauspost/pgzip"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// bufSize is the write buffer between the producer and the file or gzip.
const bufSize = 256 << 10

// Options says where the data goes.
type Options struct {
	Path   string    // "" or "-" means Stdout; a bucket URL, an object (object.go)
	Gzip   bool      // compress; implied by a Path ending in ".gz"
	Force  bool      // replace an existing Path (a regular file only)
	Stdout io.Writer // used when Path is empty
	// Context, for an object in a bucket: cancelling it aborts the upload
	// (nil: never cancelled).
	Context context.Context
	Upload  Upload // for an object in a bucket
}

// ErrExists is what an *ExistsError is (errors.Is): the output is there
// and Force is not set.
var ErrExists = errors.New("already exists")

// ExistsError is an output path that exists, and is replaced only with
// Force. Its message says only that: the caller knows how to ask for
// Force (cmd adds "use --force").
type ExistsError struct{ Path string }

func (e *ExistsError) Error() string        { return "output " + e.Path + " " + ErrExists.Error() }
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// ErrNotRegular is returned (wrapped) when Path is something other than a
// regular file (a folder, a named pipe, a device, a socket, a symbolic
// link): it is never replaced, with or without Force.
var ErrNotRegular = fsutil.ErrNotRegular

// ErrNotSupported is returned (wrapped) for a target that is a URL
// ("scheme://…") of a scheme not written to: not a bucket's, not file://.
var ErrNotSupported = errors.New("not supported: give a local path, - for stdout, or an s3://, gs:// or azblob:// URL")

// Destination is where an export goes: written to, then either committed
// (made visible, complete) or aborted (nothing of it is left, or, on a
// stream, nothing more is written). Stdout, a file, and each file of a
// Folder are destinations; Abort after Commit does nothing.
type Destination interface {
	io.Writer
	Commit() error
	Abort()
}

var _ Destination = (*Sink)(nil)

// Sink is an open destination. Write to it, then call exactly one of Commit
// or Abort.
type Sink struct {
	bw     *bufio.Writer
	gz     *pgzip.Writer
	gate   *gate // between gz and the destination
	file   *os.File
	obj    *objectWriter // an object in a bucket, instead of file
	tmp    string
	unlock func() // releases the temporary file's lock
	path   string
	opts   Options
	done   bool
	// inPlace: the file is written at its final path, inside a Folder's
	// temporary folder; Commit syncs and closes it, Abort removes it.
	inPlace bool
}

// Open opens the destination opts.Path names, chosen by its form as
// s5cmd's storage.NewClient chooses by scheme: "" or "-" is opts.Stdout, a
// bucket URL an object (openObject), a file:// URL its path, any other URL
// ("scheme://…") is refused with ErrNotSupported, anything else is a local
// file (see openLocal).
func Open(opts Options) (Destination, error) {
	if opts.Path != "" && opts.Path != "-" && source.URLScheme(opts.Path) != "" {
		switch {
		case bucket.Is(opts.Path):
			return openObject(opts)
		case source.URLScheme(opts.Path) == "file":
			p, err := source.FilePath(opts.Path)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", source.Redact(opts.Path), err)
			}
			opts.Path = p
		default:
			return nil, notSupported(opts.Path)
		}
	}
	s, err := openLocal(opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// notSupported is the error for a URL target.
func notSupported(target string) error {
	return fmt.Errorf("output %s: %w", source.Redact(target), ErrNotSupported)
}

// openLocal opens stdout, or a local file: it checks that the final path
// is free (unless Force) and a regular file if taken, removes the temporary
// files killed runs left beside it, and creates its own.
func openLocal(opts Options) (*Sink, error) {
	s := &Sink{opts: opts}
	if opts.Path == "-" {
		opts.Path = ""
	}
	var out io.Writer = opts.Stdout
	if opts.Path != "" {
		s.path = opts.Path
		if strings.HasSuffix(opts.Path, ".gz") {
			s.opts.Gzip = true
		}
		old, err := os.Lstat(opts.Path)
		if err != nil {
			old = nil // missing, or unreadable: creating the temporary file says why
		}
		if old != nil && !old.Mode().IsRegular() {
			return nil, notRegular(opts.Path, old.Mode())
		}
		if old != nil && !opts.Force {
			return nil, &ExistsError{Path: opts.Path}
		}
		fsutil.RemoveStaleTemps(opts.Path)
		f, tmp, unlock, err := fsutil.CreateTemp(opts.Path, 0o666)
		if err != nil {
			return nil, fsutil.FileError("output", opts.Path, err)
		}
		s.file, s.tmp, s.unlock, out = f, tmp, unlock, f
		if old != nil {
			// Now, not at Commit: the data must not be readable by more
			// people than the file it replaces while it is written.
			if err := fsutil.KeepModeAndOwner(f, old); err != nil {
				s.discard()
				return nil, fsutil.FileError("output", opts.Path, err)
			}
		}
	}
	if err := s.layer(out); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// layer puts the write buffer, and gzip when asked, in front of out.
func (s *Sink) layer(out io.Writer) error {
	if s.opts.Gzip {
		s.gate = &gate{w: out}
		gz, err := pgzip.NewWriterLevel(s.gate, pgzip.DefaultCompression)
		if err != nil {
			return err
		}
		s.gz = gz
		// 1 MiB blocks, two per core: the pgzip default, written down so the
		// memory bound (about 2 x cores x 2 MiB) is visible here.
		if err := gz.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
			return err
		}
		out = gz
	}
	s.bw = bufio.NewWriterSize(out, bufSize)
	return nil
}

// notRegular is the error for a final path that is not a regular file.
func notRegular(path string, mode fs.FileMode) error {
	var kind string
	switch {
	case mode&fs.ModeSymlink != 0:
		kind = "a symbolic link"
	case mode.IsDir():
		kind = "a directory"
	case mode&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	case mode&fs.ModeCharDevice != 0:
		kind = "a character device"
	case mode&fs.ModeDevice != 0:
		kind = "a block device"
	default:
		kind = "a special file"
	}
	return fmt.Errorf("output %s is %s, %w", path, kind, ErrNotRegular)
}

// Write buffers p for the destination.
func (s *Sink) Write(p []byte) (int, error) { return s.bw.Write(p) }

// Commit flushes everything, closes gzip (which writes its footer), syncs the
// file and moves it to its final path. Without Force an existing final path
// is never replaced, even one that appeared while the export ran; with Force
// only a regular file is, and the new file gets its permission bits (and,
// where allowed, its owner and group).
func (s *Sink) Commit() error {
	if s.done {
		return errors.New("sink already closed")
	}
	err := s.bw.Flush()
	if s.gz != nil {
		if cerr := s.gz.Close(); err == nil {
			err = cerr
		}
	}
	if s.obj != nil {
		if err == nil {
			err = s.obj.commit() // closes it, either way
			s.obj = nil
		}
		s.discard()
		return err
	}
	if s.file == nil {
		s.discard()
		return err
	}
	if s.inPlace {
		if err := s.closeFile(err); err != nil {
			return err
		}
		s.tmp = ""
		s.discard()
		return nil
	}
	if err == nil && s.opts.Force {
		if err := s.checkTarget(); err != nil {
			s.discard()
			return err
		}
	}
	if err := s.closeFile(err); err != nil {
		return err
	}
	if err := s.publish(); err != nil {
		s.discard()
		return err
	}
	s.tmp = ""
	s.discard() // releases the lock, now that the temporary name is gone
	fsutil.SyncDir(filepath.Dir(s.path))
	return nil
}

// closeFile syncs and closes the file being written, after err (the
// error so far, or nil); on any error it discards the file.
func (s *Sink) closeFile(err error) error {
	if err == nil {
		err = s.file.Sync()
	}
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	s.file = nil
	if err != nil {
		s.discard()
		return fsutil.FileError("output", s.path, err)
	}
	return nil
}

// checkTarget looks at the final path again just before Force replaces it:
// something may have appeared there since Open.
func (s *Sink) checkTarget() error {
	old, err := os.Lstat(s.path)
	if err != nil {
		return nil // gone, or unreadable: the rename says
	}
	if !old.Mode().IsRegular() {
		return notRegular(s.path, old.Mode())
	}
	if err := fsutil.KeepModeAndOwner(s.file, old); err != nil {
		return fsutil.FileError("output", s.path, err)
	}
	return nil
}

func (s *Sink) publish() error {
	if s.opts.Force {
		if err := os.Rename(s.tmp, s.path); err != nil {
			return fsutil.FileError("output", s.path, err)
		}
		return nil
	}
	// A hard link fails with EEXIST when the path is taken: an atomic
	// no-clobber rename. Where links are not supported, fall back to a check
	// and a rename.
	err := os.Link(s.tmp, s.path)
	switch {
	case err == nil:
		return os.Remove(s.tmp)
	case errors.Is(err, fs.ErrExist):
		return &ExistsError{Path: s.path}
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EXDEV):
		if _, err := os.Lstat(s.path); err == nil {
			return &ExistsError{Path: s.path}
		}
		if err := os.Rename(s.tmp, s.path); err != nil {
			return fsutil.FileError("output", s.path, err)
		}
		return nil
	default:
		return fsutil.FileError("output", s.path, err)
	}
}

// Abort discards the export: every writer is stopped before it returns
// (pgzip's goroutines included), the temporary file is removed and the
// final path left as it was; on stdout, what was already written stays,
// without a gzip footer. Safe to call after Commit (it does nothing then).
func (s *Sink) Abort() {
	if s.done {
		return
	}
	s.discard()
}

// discard stops gzip's goroutines, closes and removes the temporary file
// (whatever of that is still there) and releases its lock. It is the one
// way out of a Sink: Commit ends with it too.
func (s *Sink) discard() {
	s.done = true
	if s.gz != nil {
		// Not Close: its footer would make a truncated stream on stdout look
		// complete to gunzip. The shut gate fails every later write to the
		// destination, so the goroutines stop at once; Reset (the one pgzip
		// call that waits for them without writing) returns when they have.
		s.gate.shut.Store(true)
		s.gz.Reset(io.Discard)
		s.gz = nil
	}
	if s.obj != nil {
		s.obj.abort()
		s.obj = nil
	}
	if s.file != nil {
		s.file.Close() // the data is being thrown away
		s.file = nil
	}
	if s.tmp != "" {
		os.Remove(s.tmp) // best effort: nothing more to do
		s.tmp = ""
	}
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// errAborted is what pgzip's goroutines get from a shut gate.
var errAborted = errors.New("output aborted")

// gate passes writes on to w until shut.
type gate struct {
	w    io.Writer
	shut atomic.Bool
}

func (g *gate) Write(p []byte) (int, error) {
	if g.shut.Load() {
		return 0, errAborted
	}
	return g.w.Write(p)
}
