package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// health is GET /health: 200 when the database answers, else 503. It
// needs no credentials and says nothing of the database but that.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if err := s.checkHealth(r.Context()); err != nil {
		s.cfg.Log.Warn("health", "error", err.Error())
		w.Header().Set("Retry-After", "10")
		writeOutcome(w, http.StatusServiceUnavailable, "transient", "the database cannot be reached")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "database": "reachable"})
}

// operation is one line of GET /metadata.
type operation struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Rights string `json:"rights,omitempty"` // what the caller's token needs
	Params string `json:"params,omitempty"`
}

// metadata is GET /metadata: the operations this server has, and what
// each needs.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	base := "/fhir"
	if s.cfg.Exports != nil {
		base = s.cfg.Exports.cfg.Base
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"software":       "fhirbulk",
		"authentication": s.authKinds(),
		"operations": []operation{
			{Method: "GET", Path: "/[type]/$dump", Rights: "read", Params: "_since, fhir, gzip"},
			{Method: "GET", Path: "/fhir/[type]/$dump", Rights: "read", Params: "_since, gzip"},
			{Method: "POST", Path: "/$dump-sql", Rights: "read", Params: "_format; body {query, format, table, index} as JSON or YAML"},
			{Method: "POST", Path: "/$load, /[type]/$load, /fhir/$load, /fhir/[type]/$load", Rights: "write", Params: "body {source, update, strip-nulls, merge}"},
			{Method: "POST", Path: "/$import, /fhir/$import", Rights: "write", Params: "body {id, inputs: [{resourceType, url}], contentEncoding, update, inputFormat, mode}"},
			{Method: "GET", Path: "/BulkImportStatus/[id]", Rights: "read"},
			{Method: "GET, POST", Path: base + "/$export, " + base + "/Patient/$export, " + base + "/Group/[id]/$export", Rights: "read", Params: "HL7 Bulk Data kick-off (Prefer: respond-async): _outputFormat, _type, _since, _until, _elements; patient (POST)"},
			{Method: "GET, DELETE", Path: base + "/$export-status/[id]", Rights: "read"},
			{Method: "GET", Path: base + "/$export-files/[id]/[name]", Rights: "read"},
			{Method: "POST", Path: "/auth/token", Params: "SMART Backend Services (with --smart-clients): client_credentials with a JWT client assertion"},
			{Method: "GET", Path: "/.well-known/smart-configuration, /fhir/.well-known/smart-configuration"},
			{Method: "GET", Path: "/health"},
			{Method: "GET", Path: "/metadata"},
		},
	})
}

func (s *Server) authKinds() []string {
	kinds := []string{}
	if len(s.cfg.Auth.tokens) > 0 {
		kinds = append(kinds, "bearer")
	}
	if s.cfg.Auth.Basic() {
		kinds = append(kinds, "basic")
	}
	if s.cfg.SMART != nil {
		kinds = append(kinds, "smart")
	}
	if len(kinds) == 0 {
		kinds = append(kinds, "none")
	}
	return kinds
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // a URL's & stays &, as clients compare them
	enc.SetIndent("", "  ")
	enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body.Bytes())
}

// healthEvery is how long a health check's answer is reused: /health needs
// no credentials, and a connection per request would let anyone fill the
// database's connections.
const healthEvery = 2 * time.Second

// checkHealth reaches the database, one check at a time, reusing the last
// answer for healthEvery.
func (s *Server) checkHealth(ctx context.Context) error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if !s.healthAt.IsZero() && time.Since(s.healthAt) < healthEvery {
		return s.healthErr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	conn, err := pg.Connect(ctx, s.cfg.DSN)
	if err == nil {
		var one int
		err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
		conn.Close(context.Background())
	}
	s.healthAt, s.healthErr = time.Now(), err
	return err
}
