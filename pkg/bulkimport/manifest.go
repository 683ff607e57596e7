// Package bulkimport runs imports: a manifest of inputs (files or URLs),
// each loaded by pkg/load in a transaction of its own, several at a time,
// with the progress kept in a state file that `fhirbulk status` reads. An
// import that was interrupted (Ctrl-C, kill -9, a reboot) is resumed by
// running it again: only the inputs that did not finish are loaded.
package bulkimport

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Manifest is a parsed import manifest.
type Manifest struct {
	ID              string
	FHIR            bool   // inputFormat application/fhir+ndjson (or type: fhir)
	ContentEncoding string // as given; gzip is detected anyway
	Update          bool   // keep history, as load --history
	Inputs          []Input
	Path            string // the manifest file's absolute path; "" for stdin
}

// Input is one source of one resource type.
type Input struct {
	ResourceType string
	URL          string // as given: a URL, or a path resolved against the manifest's folder
}

// ManifestError is a manifest that cannot be run: exit status 2.
type ManifestError struct{ msg string }

func (e *ManifestError) Error() string { return e.msg }

func manifestErr(format string, args ...any) error {
	return &ManifestError{msg: "manifest: " + fmt.Sprintf(format, args...)}
}

// The keys a manifest may have: those of this tool's own shape, Aidbox's
// $import, and the HL7 bulk import proposal (whose "input: [{type, url}]"
// spells "inputs: [{resourceType, url}]"). Anything else is taken for a typo.
var (
	topKeys = map[string]bool{
		"id": true, "resourceType": true, "type": true, "inputFormat": true, "inputSource": true,
		"contentEncoding": true, "mode": true, "update": true, "storageDetail": true,
		"inputs": true, "input": true, "transactionTime": true, "requiresAccessToken": true,
	}
	inputKeys = map[string]bool{"resourceType": true, "type": true, "url": true, "inputDetails": true, "count": true}
)

var importID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseManifest reads a JSON or YAML manifest. dir is the folder relative
// paths are resolved against (the manifest's own folder); path, when not
// empty, is recorded for --resume.
func ParseManifest(data []byte, dir, path string) (*Manifest, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, manifestErr("not JSON or YAML: %s", oneLine(err.Error()))
	}
	if doc == nil {
		return nil, manifestErr("empty")
	}
	m := &Manifest{Path: path}
	for _, k := range sortedKeys(doc) {
		if !topKeys[k] {
			return nil, manifestErr("unknown key %q", k)
		}
	}
	var err error
	if m.ID, err = stringKey(doc, "id", ""); err != nil {
		return nil, err
	}
	if m.ID != "" && !importID.MatchString(m.ID) {
		return nil, manifestErr("id %q: use letters, digits, '.', '_' and '-' (at most 128)", m.ID)
	}
	format, err := stringKey(doc, "inputFormat", "")
	if err != nil {
		return nil, err
	}
	switch format {
	case "application/fhir+ndjson":
		m.FHIR = true
	case "", "application/ndjson", "application/x-ndjson", "application/aidbox+ndjson":
	default:
		return nil, manifestErr("inputFormat %q: want application/fhir+ndjson (FHIR) or application/ndjson (Aidbox)", format)
	}
	typ, err := stringKey(doc, "type", "")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "fhir":
		m.FHIR = true
	case "", "aidbox":
	default:
		return nil, manifestErr("type %q: want fhir or aidbox", typ)
	}
	if m.ContentEncoding, err = stringKey(doc, "contentEncoding", ""); err != nil {
		return nil, err
	}
	switch m.ContentEncoding {
	case "", "gzip", "plain", "identity", "none":
	default:
		return nil, manifestErr("contentEncoding %q: want gzip or plain", m.ContentEncoding)
	}
	if u, ok := doc["update"]; ok {
		b, isBool := u.(bool)
		if !isBool {
			return nil, manifestErr("update: want true or false")
		}
		m.Update = b
	}

	list, key := doc["inputs"], "inputs"
	if list == nil {
		list, key = doc["input"], "input"
	}
	if _, both := doc["input"]; both && doc["inputs"] != nil {
		return nil, manifestErr("both inputs and input: give one")
	}
	items, ok := list.([]any)
	if !ok || len(items) == 0 {
		return nil, manifestErr("no inputs (a list of {resourceType, url})")
	}
	for i, it := range items {
		at := fmt.Sprintf("%s[%d]", key, i)
		obj, ok := it.(map[string]any)
		if !ok {
			return nil, manifestErr("%s: want {resourceType, url}", at)
		}
		for _, k := range sortedKeys(obj) {
			if !inputKeys[k] {
				return nil, manifestErr("%s: unknown key %q", at, k)
			}
		}
		rt, err := stringKey(obj, "resourceType", at+".")
		if err != nil {
			return nil, err
		}
		if rt == "" {
			if rt, err = stringKey(obj, "type", at+"."); err != nil {
				return nil, err
			}
		}
		if rt == "" {
			return nil, manifestErr("%s: no resourceType", at)
		}
		if err := pg.ValidateType(rt); err != nil {
			return nil, manifestErr("%s.resourceType: %v", at, err)
		}
		u, err := stringKey(obj, "url", at+".")
		if err != nil {
			return nil, err
		}
		if u == "" {
			return nil, manifestErr("%s: no url", at)
		}
		if !source.IsURL(u) {
			if strings.Contains(u, "://") {
				return nil, manifestErr("%s.url %s: only http(s) URLs and local paths", at, source.Redact(u))
			}
			u = strings.TrimPrefix(u, "file:")
			if !filepath.IsAbs(u) {
				u = filepath.Join(dir, u)
			}
		}
		m.Inputs = append(m.Inputs, Input{ResourceType: rt, URL: u})
	}
	return m, nil
}

func stringKey(obj map[string]any, key, at string) (string, error) {
	v, ok := obj[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", manifestErr("%s%s: want a string", at, key)
	}
	return s, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// NewID makes an import id: the time and a random suffix.
func NewID(now time.Time) string {
	var r [3]byte
	rand.Read(r[:]) //nolint:errcheck
	return "import-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

// sameInputs reports whether a resumed import's manifest lists the inputs
// its state file recorded (compared as they are shown: redacted).
func sameInputs(m *Manifest, st *State) bool {
	if len(m.Inputs) != len(st.Inputs) {
		return false
	}
	for i, in := range m.Inputs {
		if in.ResourceType != st.Inputs[i].ResourceType || source.Redact(in.URL) != st.Inputs[i].URL {
			return false
		}
	}
	return true
}
