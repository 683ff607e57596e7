// Package sink is where exports go: stdout or a file that appears only when
// complete. A file is written under a temporary name beside its final path
// and moved into place by Commit, so a reader (a cron job, a loader polling a
// folder) never sees a truncated export; Abort removes the temporary file.
package sink

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/klauspost/pgzip"
)

// bufSize is the write buffer between the producer and the file or gzip.
const bufSize = 256 << 10

// Options says where the data goes.
type Options struct {
	Path   string    // "" or "-" means Stdout
	Gzip   bool      // compress; implied by a Path ending in ".gz"
	Force  bool      // replace an existing Path
	Stdout io.Writer // used when Path is empty
}

// ErrExists is returned (wrapped) when Path exists and Force is not set.
var ErrExists = errors.New("already exists")

// Sink is an open destination. Write to it, then call exactly one of Commit
// or Abort.
type Sink struct {
	bw   *bufio.Writer
	gz   *pgzip.Writer
	file *os.File
	tmp  string
	path string
	opts Options
	done bool
}

// Open prepares the destination. For a file it checks that the final path is
// free (unless Force) and creates the temporary file beside it.
func Open(opts Options) (*Sink, error) {
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
		if !opts.Force {
			if _, err := os.Lstat(opts.Path); err == nil {
				return nil, fmt.Errorf("output %s %w (use --force to replace it)", opts.Path, ErrExists)
			}
		}
		f, tmp, err := createTemp(opts.Path)
		if err != nil {
			return nil, err
		}
		s.file, s.tmp, out = f, tmp, f
	}
	if s.opts.Gzip {
		gz, err := pgzip.NewWriterLevel(out, pgzip.DefaultCompression)
		if err != nil {
			s.Abort()
			return nil, err
		}
		// 1 MiB blocks, two per core: the pgzip default, written down so the
		// memory bound (about 2 x cores x 2 MiB) is visible here.
		if err := gz.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
			s.Abort()
			return nil, err
		}
		s.gz, out = gz, gz
	}
	s.bw = bufio.NewWriterSize(out, bufSize)
	return s, nil
}

// createTemp makes a new file beside path with a hidden random name. It is
// created with mode 0666 so that the umask decides, as for any new file.
func createTemp(path string) (*os.File, string, error) {
	dir, base := filepath.Split(path)
	for range 10 {
		var r [6]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, "", err
		}
		tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(r[:])+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			return f, tmp, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
	}
	return nil, "", fmt.Errorf("output %s: cannot create a temporary file beside it", path)
}

// unwrapPath drops the *PathError wrapper whose path (the temporary name) would
// only confuse; the caller names the user's path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Write buffers p for the destination.
func (s *Sink) Write(p []byte) (int, error) { return s.bw.Write(p) }

// Commit flushes everything, closes gzip (which writes its footer), syncs the
// file and moves it to its final path. Without Force an existing final path
// is never replaced, even one that appeared while the export ran.
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
	if s.file == nil {
		s.done = true
		return err
	}
	if err == nil {
		err = s.file.Sync()
	}
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.removeTemp()
		return fmt.Errorf("output %s: %w", s.path, unwrapPath(err))
	}
	if err := s.publish(); err != nil {
		s.removeTemp()
		return err
	}
	s.done = true
	syncDir(filepath.Dir(s.path))
	return nil
}

func (s *Sink) publish() error {
	if s.opts.Force {
		if err := os.Rename(s.tmp, s.path); err != nil {
			return fmt.Errorf("output %s: %w", s.path, unwrapPath(err))
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
		return fmt.Errorf("output %s %w (use --force to replace it)", s.path, ErrExists)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EXDEV):
		if _, err := os.Lstat(s.path); err == nil {
			return fmt.Errorf("output %s %w (use --force to replace it)", s.path, ErrExists)
		}
		if err := os.Rename(s.tmp, s.path); err != nil {
			return fmt.Errorf("output %s: %w", s.path, unwrapPath(err))
		}
		return nil
	default:
		return fmt.Errorf("output %s: %w", s.path, unwrapPath(err))
	}
}

// Abort discards the export: the temporary file is removed and the final
// path left as it was; on stdout, what was already written stays, without a
// gzip footer. Safe to call after Commit (it does nothing then).
func (s *Sink) Abort() {
	if s.done {
		return
	}
	s.done = true
	// gzip is deliberately not closed: its footer would make a truncated
	// stream on stdout look complete to gunzip.
	if s.file != nil {
		s.file.Close() //nolint:errcheck
		s.removeTemp()
	}
}

func (s *Sink) removeTemp() {
	if s.tmp != "" {
		os.Remove(s.tmp) //nolint:errcheck // best effort: nothing more to do
	}
}

// syncDir makes the rename durable; failures are ignored (not every
// filesystem supports fsync on a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()  //nolint:errcheck
		d.Close() //nolint:errcheck
	}
}
