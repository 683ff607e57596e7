//go:build !unix

package source

import "os"

// checkReadable tells whether the file at path, which is not a regular
// file, opens for reading. Here nothing waits in an open (a named pipe's
// open fails at once without a server), so it is opened and closed.
func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
