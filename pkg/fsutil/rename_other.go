//go:build !linux

package fsutil

// RenameNoReplace renames from to to, failing with an error that wraps
// fs.ErrExist when to exists (checked first: not one atomic step here).
func RenameNoReplace(from, to string) error { return renameChecked(from, to) }

// Exchange puts from at to and the old to at from: here in two renames,
// between which to is briefly missing.
func Exchange(from, to string) error { return swapAside(from, to) }
