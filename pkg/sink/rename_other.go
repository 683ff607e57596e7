//go:build !linux

package sink

// renameNoReplace renames from to to, failing with ErrExists when to
// exists (checked first: not one atomic step here).
func renameNoReplace(from, to string) error { return renameChecked(from, to) }

// exchange puts from at to and the old to at from: here in two renames,
// between which to is briefly missing.
func exchange(from, to string) error { return swapAside(from, to) }
