//go:build unix

package fsutil

import (
	"os"
	"os/exec"
	"testing"
)

// lockHeldByOther runs this test binary again to ask LockHeld from another
// process (a process's own POSIX record locks are invisible to F_GETLK).
func lockHeldByOther(t *testing.T, path string) bool {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLockHeld$")
	cmd.Env = append(os.Environ(), "FSUTIL_LOCK_HELD="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	// "taken" would say the child took a lock this process holds.
	return string(out) == "y\n"
}

// TestHelperLockHeld is the child of lockHeldByOther.
func TestHelperLockHeld(t *testing.T) {
	path := os.Getenv("FSUTIL_LOCK_HELD")
	if path == "" {
		t.Skip("a helper for TestLockFile")
	}
	if LockHeld(path) {
		os.Stdout.WriteString("y\n")
	} else {
		os.Stdout.WriteString("n\n")
	}
	if f, err := LockFile(path); err == nil {
		f.Close()
		os.Stdout.WriteString("taken\n")
	}
	os.Exit(0)
}
