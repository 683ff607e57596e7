//go:build unix

package source

import "golang.org/x/sys/unix"

// checkReadable tells whether the file at path, which is not a regular
// file, could be opened for reading, without opening it: opening a FIFO
// waits for its writer, and would let a writer waiting for us go on to
// write to a reader about to close.
func checkReadable(path string) error {
	return unix.Access(path, unix.R_OK)
}
