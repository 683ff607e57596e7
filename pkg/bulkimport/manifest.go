// Package bulkimport runs imports: a manifest of inputs (files or URLs),
// each loaded by pkg/load in a transaction of its own, several at a time,
// with the progress kept in a state file that `fhirbulk status` reads. An
// import that was interrupted (Ctrl-C, kill -9, a reboot) is resumed by
// running it again: only the inputs that did not finish are loaded.
package bulkimport

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Manifest is a parsed import manifest.
type Manifest struct {
	ID              string
	FHIR            bool   // inputFormat application/fhir+ndjson (or type: fhir)
	ContentEncoding string // as given; gzip is detected anyway
	Update          bool   // keep history, as load --history
	Inputs          []Input
	Path            string // the manifest file's (or export folder's) absolute path; "" for stdin
	Dir             string // the folder its relative paths are resolved against
	// Of a bulk export (an HL7 manifest or a folder): files of deletions,
	// applied after every input finished, and the error files of the server
	// that exported (named in the state, not loaded).
	Deleted      []Input
	ServerErrors []string
	FromExport   bool // a bulk export: its id comes from its path
	// Export is fhirbulk's extension of an export's manifest: what chain
	// of exports it belongs to (see CheckOrder). nil for anything else.
	Export *bulkdata.Ext
}

// Input is one source of one resource type.
type Input struct {
	ResourceType string
	URL          string // as given: a URL, or a path resolved against the manifest's folder
	Count        *int64 // how many resources it holds, when the manifest says
}

// all is the inputs, then the deletions.
func (m *Manifest) all() []Input {
	return append(append([]Input(nil), m.Inputs...), m.Deleted...)
}

// ManifestError is a manifest that cannot be run: exit status 2.
type ManifestError struct {
	msg     string
	Outside bool // a local url outside the manifest's folder, refused (Where.AllowOutside reads it)
}

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

// ParseManifest reads a JSON or YAML manifest read from w: its urls are
// resolved against w.Dir (see resolveURL); w.Path, when not empty, is
// recorded for --resume.
func ParseManifest(data []byte, w Where) (*Manifest, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, manifestErr("not JSON or YAML: %s", yamlProblem(err, nil))
	}
	var doc map[string]any
	if err := root.Decode(&doc); err != nil {
		return nil, manifestErr("%s", yamlProblem(err, &root))
	}
	if doc == nil {
		return nil, manifestErr("empty")
	}
	for _, k := range sortedKeys(doc) {
		if !topKeys[k] {
			return nil, manifestErr("unknown key %s", shown(k))
		}
	}
	m := &Manifest{Path: w.Path, Dir: w.Dir}
	if err := m.parseSettings(doc); err != nil {
		return nil, err
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
		in, err := parseInput(it, fmt.Sprintf("%s[%d]", key, i), w)
		if err != nil {
			return nil, err
		}
		m.Inputs = append(m.Inputs, in)
	}
	return m, nil
}

// parseSettings reads the top-level keys other than the inputs.
func (m *Manifest) parseSettings(doc map[string]any) error {
	var err error
	if m.ID, err = stringKey(doc, "id", ""); err != nil {
		return err
	}
	if m.ID != "" && CheckID(m.ID) != nil {
		return manifestErr("id %s: use letters, digits, '.', '_' and '-' (at most 128)", shown(m.ID))
	}
	format, err := stringKey(doc, "inputFormat", "")
	if err != nil {
		return err
	}
	switch format {
	case "application/fhir+ndjson":
		m.FHIR = true
	case "", "application/ndjson", "application/x-ndjson", "application/aidbox+ndjson":
	default:
		return manifestErr("inputFormat %s: want application/fhir+ndjson (FHIR) or application/ndjson (Aidbox)", shown(format))
	}
	typ, err := stringKey(doc, "type", "")
	if err != nil {
		return err
	}
	switch typ {
	case "fhir":
		m.FHIR = true
	case "", "aidbox":
	default:
		return manifestErr("type %s: want fhir or aidbox", shown(typ))
	}
	if m.ContentEncoding, err = stringKey(doc, "contentEncoding", ""); err != nil {
		return err
	}
	switch m.ContentEncoding {
	case "", "gzip", "plain", "identity", "none":
	default:
		return manifestErr("contentEncoding %s: want gzip or plain", shown(m.ContentEncoding))
	}
	if u, ok := doc["update"]; ok {
		b, isBool := u.(bool)
		if !isBool {
			return manifestErr("update: want true or false")
		}
		m.Update = b
	}
	return nil
}

// parseInput reads one item of the inputs (at names it in errors), its url
// resolved as resolveURL does.
func parseInput(it any, at string, w Where) (Input, error) {
	obj, ok := it.(map[string]any)
	if !ok {
		return Input{}, manifestErr("%s: want {resourceType, url}", at)
	}
	for _, k := range sortedKeys(obj) {
		if !inputKeys[k] {
			return Input{}, manifestErr("%s: unknown key %s", at, shown(k))
		}
	}
	rt, err := stringKey(obj, "resourceType", at+".")
	if err == nil && rt == "" {
		rt, err = stringKey(obj, "type", at+".")
	}
	if err != nil {
		return Input{}, err
	}
	if rt == "" {
		return Input{}, manifestErr("%s: no resourceType", at)
	}
	if err := store.ValidateType(rt); err != nil {
		if source.Redact(rt) != rt { // pg's message quotes it whole
			return Input{}, manifestErr("%s.resourceType %s: not a resource type", at, shown(rt))
		}
		return Input{}, manifestErr("%s.resourceType: %v", at, err)
	}
	u, err := stringKey(obj, "url", at+".")
	if err != nil {
		return Input{}, err
	}
	if u, err = resolveURL(u, w, at); err != nil {
		return Input{}, err
	}
	in := Input{ResourceType: rt, URL: u}
	if v, ok := obj["count"]; ok && v != nil {
		n, ok := wholeNumber(v)
		if !ok || n < 0 {
			return Input{}, manifestErr("%s.count: want a whole number of resources, not %s", at, shown(fmt.Sprint(v)))
		}
		in.Count = &n
	}
	return in, nil
}

// wholeNumber is v, a number as YAML or JSON decode it, when it is a whole
// one that an int64 holds.
func wholeNumber(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		if n != math.Trunc(n) || n < 0 || n >= 1<<63 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
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

// shown is a manifest's key or value fit for an error message: quoted (so
// no control character gets through) and, if it is a URL, redacted, in
// case a URL ended up where a word was expected.
func shown(v string) string { return strconv.Quote(source.Redact(v)) }

// yamlProblem is a YAML error message that keeps yaml.v3's line number and
// kind of problem, but none of the document: yaml.v3 quotes values in its
// messages (a mistagged `url: !!int https://user:password@host/x?sig=…`
// comes back whole), and a manifest's values are signed URLs. So the
// message is rebuilt from what is known to be safe, never passed on. root,
// when given, is the parsed document, to find the line of a problem
// yaml.v3 does not place.
func yamlProblem(err error, root *yaml.Node) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var out []string
		for _, e := range te.Errors {
			out = append(out, yamlTypeProblem(e))
		}
		return strings.Join(out, "; ")
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := ""
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, msg = m[1], msg[len(m[0]):]
	}
	switch {
	case strings.HasPrefix(msg, "cannot decode "):
		msg = "a value that does not fit its tag"
		if m := yamlDecodeErr.FindStringSubmatch(err.Error()); m != nil {
			msg = fmt.Sprintf("cannot decode %s as a %s", m[1], m[2])
		}
	case strings.HasPrefix(msg, "unknown anchor "):
		msg = "unknown anchor referenced"
	case strings.HasPrefix(msg, "anchor ") && strings.HasSuffix(msg, " value contains itself"):
		msg = "an anchor's value contains itself"
	case strings.HasPrefix(msg, "invalid map key"):
		msg = "invalid map key"
	case !yamlSafeProblem.MatchString(msg) || strings.Contains(msg, "://"):
		msg = "cannot be read"
	}
	if line == "" && root != nil {
		if n := badScalar(root); n != nil {
			line = strconv.Itoa(n.Line)
		}
	}
	if line != "" {
		return "line " + line + ": " + msg
	}
	return msg
}

// yamlTypeProblem rebuilds one of yaml.v3's "line N: cannot unmarshal
// !!TAG `VALUE` into TYPE" messages without VALUE. (For !!seq and !!map
// yaml.v3 glues the value to the tag: "!!mapVALUE".)
func yamlTypeProblem(e string) string {
	m := yamlTypeErr.FindStringSubmatch(e)
	if m == nil {
		return "a value of the wrong kind"
	}
	what, into := m[2], m[3]
	tag := "a value"
	for _, t := range yamlTags {
		if what == t || strings.HasPrefix(what, t+" `") {
			tag = t
		}
	}
	if !goTypeName.MatchString(into) {
		into = "what was wanted"
	}
	return fmt.Sprintf("line %s: cannot unmarshal %s into %s", m[1], tag, into)
}

var (
	yamlLine    = regexp.MustCompile(`^line (\d+): `)
	yamlTypeErr = regexp.MustCompile(`(?s)^line (\d+): cannot unmarshal (.*) into (.*)$`) // greedy: the last " into "
	yamlTags    = []string{"!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!binary", "!!seq", "!!map", "!!merge"}
	goTypeName  = regexp.MustCompile(`^[A-Za-z0-9_.\[\]{} *]+$`)
	// yaml.v3's "cannot decode !!TAG `VALUE` as a !!TAG" (no line number):
	// the value may span lines.
	yamlDecodeErr   = regexp.MustCompile(`(?s)^yaml: cannot decode (` + strings.Join(yamlTags, "|") + `) ` + "`" + `.*` + "`" + ` as a (` + strings.Join(yamlTags, "|") + `)$`)
	yamlSafeProblem = regexp.MustCompile(`^[A-Za-z0-9 ,;:()'\[\]{}!<>-]*$`)
)

// badScalar finds the first scalar that yaml.v3 cannot decode on its own
// (an explicit tag its value does not fit), for its line.
func badScalar(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.ScalarNode {
		var v any
		if n.Decode(&v) != nil {
			return n
		}
		return nil
	}
	for _, c := range n.Content {
		if bad := badScalar(c); bad != nil {
			return bad
		}
	}
	return nil
}

// NewID makes an import id: the time and a random suffix.
func NewID(now time.Time) string {
	var r [3]byte
	rand.Read(r[:])
	return "import-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

// sameInputs reports whether a resumed import's manifest lists the inputs
// its state file recorded, compared as they are shown (redacted). Whether
// an input's whole URL changed too is for unchanged to tell.
func sameInputs(m *Manifest, st *State) bool {
	all := m.all()
	if len(all) != len(st.Inputs) {
		return false
	}
	for i, in := range all {
		if in.ResourceType != st.Inputs[i].ResourceType || source.Redact(in.URL) != st.Inputs[i].URL {
			return false
		}
	}
	return true
}

// unchanged reports whether input in of the manifest is the very input
// recorded as was: the same whole URL, query and user info included. A
// state file of a version that recorded no hash knows only the redacted
// URL, which is the whole URL only when redaction took nothing away (a
// path, a URL without query or user info); otherwise the input counts as
// changed, and a finished one loads again: a load is an upsert, so loading
// twice costs time, while skipping a changed input would lose its data.
func unchanged(in Input, was InputState) bool {
	if was.URLHash != "" {
		return was.URLHash == HashURL(in.URL)
	}
	return source.Redact(in.URL) == in.URL && was.URL == in.URL
}
