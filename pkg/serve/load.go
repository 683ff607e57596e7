package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// loadRequest is the body of POST /$load (JSON or YAML), as Aidbox has it.
type loadRequest struct {
	Source     string         `yaml:"source"`
	Update     bool           `yaml:"update"`
	StripNulls bool           `yaml:"strip-nulls"`
	Merge      map[string]any `yaml:"merge"`
}

// load is POST /$load, /[type]/$load and their /fhir/ forms: the ndjson(.gz)
// at source loaded as load loads it, all or nothing. The answer is
// {"total": N} with a type in the path, else the count per type.
func (s *Server) load(w http.ResponseWriter, r *http.Request, _ Caller) {
	var req loadRequest
	if status, err := readBody(w, r, &req); err != nil {
		writeOutcome(w, status, "invalid", err.Error())
		return
	}
	if len(r.URL.Query()) > 0 {
		writeOutcome(w, http.StatusBadRequest, "invalid", "$load takes no query parameters (its body says what to load)")
		return
	}
	if strings.TrimSpace(req.Source) == "" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "no source: want {source: URL}")
		return
	}
	if err := s.cfg.Sources.CheckURL(req.Source); err != nil {
		writeOutcome(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	typ := r.PathValue("type")
	if typ != "" {
		if err := store.ValidateType(typ); err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
			return
		}
	}
	opts := load.Options{Type: typ, FHIR: strings.HasPrefix(r.URL.Path, "/fhir/"), History: req.Update, StripNulls: req.StripNulls,
		FormatCheck: fhirformat.CheckLines, FormatHint: loadFormatHint}
	if req.Merge != nil {
		raw, _ := json.Marshal(req.Merge) // from YAML: JSON-able
		m, err := load.ParseMerge(string(raw))
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "merge: "+err.Error())
			return
		}
		opts.Merge = m
	}
	ctx := r.Context()
	conn := s.connect(w, r)
	if conn == nil {
		return
	}
	defer conn.Close(context.Background())
	layout := &store.Layout{DSN: s.cfg.DSN}
	defer layout.Close()
	l := &load.Loader{Conn: conn, Layout: layout, Opts: opts}
	res, err := l.LoadSource(ctx, req.Source, source.Options{Client: s.cfg.Sources.Client()})
	if err != nil {
		if ctx.Err() != nil {
			panic(http.ErrAbortHandler) // rolled back: the client went away
		}
		var down *pg.ConnectError
		if errors.As(err, &down) {
			s.databaseDown(w, r, err)
			return
		}
		var fe *ForbiddenError
		status, code := http.StatusUnprocessableEntity, "processing"
		if errors.As(err, &fe) {
			status, code = http.StatusForbidden, "forbidden"
		}
		writeOutcome(w, status, code, firstLine(source.RedactText(err.Error())))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, res.Summary(typ != "", false)+"\n")
}

// loadFormatHint says what to do about a source found in the other format
// than its $load path says.
func loadFormatHint(found fhirformat.Format) string {
	if found == fhirformat.FHIR {
		return "post it to /fhir/.../$load"
	}
	return "post it to /$load or /[type]/$load (not under /fhir/)"
}

// readBody reads a JSON or YAML body (as its Content-Type says) of at most
// maxBody bytes into v, refusing keys v does not have.
func readBody(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	data, status, err := readRaw(w, r)
	if err != nil {
		return status, err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return http.StatusBadRequest, errors.New("an empty body")
		}
		// yaml's errors span lines and name our Go types.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		msg = strings.TrimPrefix(strings.TrimPrefix(msg, "yaml: "), "unmarshal errors: ")
		if i := strings.Index(msg, " in type serve."); i >= 0 {
			msg = msg[:i]
		}
		return http.StatusBadRequest, fmt.Errorf("the body is not %s as expected: %s", map[bool]string{true: "JSON", false: "YAML"}[strings.HasSuffix(mt, "json")], msg)
	}
	return 0, nil
}

// checkContentType refuses a body that says it is neither JSON nor YAML.
func checkContentType(r *http.Request) (int, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return http.StatusUnsupportedMediaType, errors.New("a Content-Type is needed: application/json or application/yaml")
	case mt != "application/json" && mt != "application/yaml" && mt != "text/yaml" && mt != "application/x-yaml" && mt != "application/fhir+json":
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %s: application/json or application/yaml", mt)
	}
	return 0, nil
}
