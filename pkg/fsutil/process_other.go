//go:build !unix

package fsutil

// ProcessAlive cannot tell here: it says no, and a caller that would
// refuse a live process's work goes on as for a dead one.
func ProcessAlive(pid int) bool { return false }
