//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package sink

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// What is at the final path, if not a regular file, is refused with one
// line naming it, with or without Force, and nothing is created beside it.
func TestNotRegularRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := listDir(t, dir)
	for path, kind := range map[string]string{
		fifo:        "a named pipe (FIFO)",
		sub:         "a directory",
		link:        "a symbolic link",
		dangling:    "a symbolic link",
		sock:        "a socket",
		"/dev/null": "a character device",
	} {
		for _, force := range []bool{false, true} {
			s, err := Open(Options{Path: path, Force: force})
			if err == nil {
				s.Abort()
				t.Errorf("Open(%s, force %v) succeeded", path, force)
				continue
			}
			want := "output " + path + " is " + kind + ", not a regular file"
			if !errors.Is(err, ErrNotRegular) || err.Error() != want {
				t.Errorf("Open(%s, force %v): %v, want %q", path, force, err, want)
			}
		}
	}
	if got := listDir(t, dir); got != before {
		t.Errorf("folder holds %q, was %q", got, before)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO changed: %v %v", fi.Mode(), err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("the link's target changed: %q", got)
	}
}

// Something other than a regular file appearing at the path while the
// export runs is not replaced by Commit either.
func TestForceCommitRefusesLateFIFO(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	s, err := Open(Options{Path: path, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("new\n"))
	if err := s.Commit(); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Commit over a FIFO: %v, want ErrNotRegular", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO changed: %v %v", fi.Mode(), err)
	}
	if got := listDir(t, dir); got != "out.ndjson" {
		t.Errorf("folder holds %q", got)
	}
}

// --force keeps the replaced file's permission bits (the umask would give
// 0644 or so), and its owner and group when root.
func TestForceKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o600, 0o640, 0o444, 0o755} {
		path := filepath.Join(dir, fmt.Sprintf("out-%o", mode))
		os.WriteFile(path, []byte("old"), 0o600)
		os.Chmod(path, mode)
		s, err := openLocal(Options{Path: path, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(s.tmp); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%o: the temporary file has mode %o while written", mode, fi.Mode().Perm())
		}
		s.Write([]byte("new"))
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("mode %o after --force over a %o file", fi.Mode().Perm(), mode)
		}
		if got, _ := os.ReadFile(path); string(got) != "new" {
			t.Errorf("content %q", got)
		}
	}
	// A file that appears (with its own mode) while the export runs.
	late := filepath.Join(dir, "late")
	s, err := Open(Options{Path: late, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(late, []byte("late"), 0o600)
	os.Chmod(late, 0o600)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(late); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o after --force over a file that appeared as 0600", fi.Mode().Perm())
	}

	if os.Geteuid() != 0 {
		t.Log("not root: owner and group are not tested")
		return
	}
	owned := filepath.Join(dir, "owned")
	os.WriteFile(owned, []byte("old"), 0o640)
	if err := os.Chown(owned, 4321, 5432); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Path: owned, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(owned)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4321 || st.Gid != 5432 || fi.Mode().Perm() != 0o640 {
		t.Errorf("owner %d:%d mode %o, want 4321:5432 640", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

// Open removes the temporary files of its path that nobody holds locked (as
// a killed writer leaves them), and nothing else.
func TestStaleTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	stale := []string{".out.ndjson.0123456789ab.tmp", ".out.ndjson.ffffffffffff.tmp"}
	kept := []string{
		".out.ndjson.0123456789AB.tmp",
		".out.ndjson.0123456789a.tmp",
		".out.ndjson.gz.0123456789ab.tmp",
		".other.0123456789ab.tmp",
		"out.ndjson.0123456789ab.tmp",
		".out.ndjson.0123456789ab.tmp.bak",
		"keep.txt",
	}
	for _, name := range append(stale, kept...) {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	// Named as ours but not regular files: never touched (and opening the
	// FIFO must not hang).
	os.Mkdir(filepath.Join(dir, ".out.ndjson.aaaaaaaaaaaa.tmp"), 0o755)
	os.Symlink(filepath.Join(dir, "keep.txt"), filepath.Join(dir, ".out.ndjson.bbbbbbbbbbbb.tmp"))
	if err := syscall.Mkfifo(filepath.Join(dir, ".out.ndjson.cccccccccccc.tmp"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, ".out.ndjson.aaaaaaaaaaaa.tmp", ".out.ndjson.bbbbbbbbbbbb.tmp", ".out.ndjson.cccccccccccc.tmp")

	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stale {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s is still there: %v", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	s.Write([]byte("x\n"))
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	// A run refused (the path is taken) changes nothing in the folder.
	os.WriteFile(filepath.Join(dir, stale[0]), []byte("x"), 0o644)
	if _, err := Open(Options{Path: path}); !errors.Is(err, ErrExists) {
		t.Fatalf("Open over an existing file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, stale[0])); err != nil {
		t.Errorf("a refused Open removed %s: %v", stale[0], err)
	}
}

const helperEnv = "FHIRBULK_SINK_TEST_WRITER"

// A writer killed with SIGKILL leaves its temporary file; the next Open of
// the same path removes it, while an Open during the writer's life does
// not. The writer is this test binary run again as a helper process.
func TestKilledWriterTempRemoved(t *testing.T) {
	if path := os.Getenv(helperEnv); path != "" {
		s, err := Open(Options{Path: path, Gzip: true})
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		s.Write([]byte("partial\n"))
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin) // until killed (or the test is gone)
		os.Exit(3)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson.gz")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterTempRemoved$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("the writer said %q, %v", line, err)
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".out.ndjson.gz.*.tmp"))
	if len(temps) != 1 {
		t.Fatalf("temporary files while the writer runs: %q", temps)
	}

	live, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	live.Abort()
	if _, err := os.Stat(temps[0]); err != nil {
		t.Fatalf("an Open while the writer runs removed its temporary file: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the writer ended with %v, want killed", err)
	}
	if _, err := os.Stat(temps[0]); err != nil {
		t.Fatalf("the killed writer's temporary file: %v", err)
	}
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(temps[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed writer's temporary file is still there after Open: %v", err)
	}
	s.Abort()
	if got := listDir(t, dir); got != "" {
		t.Errorf("folder holds %q", got)
	}
}
