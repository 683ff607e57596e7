package smart

import (
	"regexp"
	"strings"
)

// v2Permissions is a SMART v2 permission string (the letters of cruds, in
// that order, each at most once).
var v2Permissions = regexp.MustCompile(`^c?r?u?d?s?$`)

// Readable says which resource types a granted scope (space-separated)
// lets its holder read in bulk: every type (system/*.read, system/*.rs,
// system/*.*), or those named (system/Patient.read, system/Observation.rs).
// A scope of a patient or a user, one with a v2 query (?category=...) and
// one without read access give nothing: a bulk export cannot honour them.
func Readable(scope string) (all bool, types []string) {
	for _, s := range strings.Fields(scope) {
		rest, ok := strings.CutPrefix(s, "system/")
		if !ok {
			continue
		}
		typ, perm, ok := strings.Cut(rest, ".")
		if !ok || typ == "" || strings.ContainsAny(perm, "?&=") {
			continue
		}
		if perm != "read" && perm != "*" && !(perm != "" && v2Permissions.MatchString(perm) && strings.Contains(perm, "r")) {
			continue
		}
		if typ == "*" {
			return true, nil
		}
		types = append(types, typ)
	}
	return false, types
}
