package cmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/serve"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// serveOptions are serve's flags.
type serveOptions struct {
	listen          string
	tokenFile       string
	basicFile       string
	insecureNoAuth  bool
	tlsCert, tlsKey string
	maxConcurrent   int
	shutdownTimeout time.Duration
	stmtTimeout     time.Duration
	logFormat       string
	allowSources    []string
	stateDir        string
	smartClients    string
	fhirBase        string
	exportDir       string
	exportTTL       time.Duration
	maxExports      int
	exportParallel  int
	publicURL       string
}

func (a *app) serveCmd() *cobra.Command {
	var f serveOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Aidbox Bulk API over HTTP ($dump, ...)",
		Long: `Serve the Aidbox Bulk API over HTTP on the database of --db, on the same
streaming core as the commands: GET /[type]/$dump (and /fhir/[type]/$dump),
POST /$dump-sql, POST /$load (/[type]/$load, /fhir/...), POST /$import
(/fhir/$import) with GET /BulkImportStatus/ID, GET /health, GET /metadata.
Imports run in the state folder (--state-dir, as import's), resumably: one a
stop interrupted goes on when the server starts again.

HL7 Bulk Data Access under --fhir-base (/fhir): kick-off at $export,
Patient/$export and Group/ID/$export; status and DELETE at
$export-status/ID; files at $export-files/ID/NAME. Each job is an export
at one snapshot (--export-parallel connections) into --export-dir, kept
--export-ttl; a job a stop or a crash cut is failed, never served half.
SMART Backend Services clients (--smart-clients) get access tokens at
/auth/token; their scopes (system/*.read, system/Patient.rs, ...) limit
the types they export.

$load fetches the URL its caller names: only http(s) to public addresses,
every address a name resolves to and every redirect checked; loopback,
link-local (the cloud metadata service), private ranges, files and buckets
only under an --allow-source prefix.

Every operation needs credentials: bearer tokens with their rights
(--token-file: lines NAME RIGHTS TOKEN, RIGHTS read, write or read,write) or
basic auth (--basic-file: an htpasswd file of bcrypt hashes); SMART
clients for $export only. Without any, serve listens only on this machine (a loopback --listen);
--insecure-no-auth lets it listen elsewhere without any.

One access log line per request goes to stderr (never a token or a query
string). SIGTERM or Ctrl-C stops it: no new requests, the running ones
get --shutdown-timeout to finish, then are cancelled.`,
		Example: `  fhirbulk serve --token-file /etc/fhirbulk/tokens --listen 0.0.0.0:8080
  curl -H "Authorization: Bearer $TOKEN" 'http://localhost:8080/Patient/$dump' | gzip > patients.ndjson.gz
  curl -u client:secret 'http://localhost:8080/Observation/$dump?gzip=true&_since=2026-01-01' > obs.ndjson.gz`,
		Args: exactArgs(0, "no arguments"),
	}
	fl := c.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "listen on `ADDR` (host:port; port 0 picks a free one)")
	fl.StringVar(&f.tokenFile, "token-file", "", "bearer tokens `FILE`: lines NAME RIGHTS TOKEN (mode 0600)")
	fl.StringVar(&f.basicFile, "basic-file", "", "basic auth users `FILE`: htpasswd -B (bcrypt) lines USER:HASH[:RIGHTS] (mode 0600)")
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve without authentication on any address (default: only on loopback)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate `FILE` (PEM; with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "the certificate's private key `FILE` (PEM)")
	fl.IntVar(&f.maxConcurrent, "max-concurrent", 4, "run at most `N` dumps, loads and imports at once (503 with Retry-After beyond)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, let running requests finish for `DURATION`, then cancel them")
	fl.DurationVar(&f.stmtTimeout, "statement-timeout", 5*time.Minute, "stop a $dump-sql query after `DURATION` (statement_timeout)")
	fl.StringVar(&f.logFormat, "log-format", "text", "access log `FORMAT`: text or json")
	fl.StringVar(&f.smartClients, "smart-clients", "", "SMART Backend Services clients `FILE`: a JSON array of {clientId, jwks or jwksUrl, scope}; serves /auth/token and .well-known/smart-configuration")
	fl.StringVar(&f.fhirBase, "fhir-base", "/fhir", "serve HL7 Bulk Data $export under this `PATH` ([PATH]/$export, [PATH]/Patient/$export, [PATH]/Group/ID/$export)")
	fl.StringVar(&f.publicURL, "public-url", "", "the `URL` (scheme://host[:port]) clients reach the server at, behind a proxy that ends TLS: in the URLs it gives and the aud of SMART assertions (default: as each request came)")
	fl.StringVar(&f.exportDir, "export-dir", "", "keep $export jobs' files in `DIR`, the server's own (default: exports/DATABASE-HASH in --state-dir, one per database)")
	mustComplete(c, "export-dir", completeDirs)
	fl.DurationVar(&f.exportTTL, "export-ttl", 24*time.Hour, "remove a finished $export's files `DURATION` after it finished")
	fl.IntVar(&f.maxExports, "max-exports", 2, "run at most `N` $export jobs at once (429 with Retry-After beyond)")
	fl.IntVar(&f.exportParallel, "export-parallel", 2, "read each $export over `N` connections, as export --parallel")
	fl.StringVar(&f.stateDir, "state-dir", "", "$import's state files' `DIR` (as for import)")
	mustComplete(c, "state-dir", completeDirs)
	fl.StringArrayVar(&f.allowSources, "allow-source", nil, "let callers' $load and $import name URLs starting with `PREFIX` (e.g. http://10.0.0.5:9000/, file:///data/, s3://bucket/; ending in /); repeatable")
	a.dbFlag(c)
	mustComplete(c, "log-format", completeValues("text", "json"))
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runServe(ctx, f)
	})
	return c
}

// runServe serves until ctx ends.
func (a *app) runServe(ctx context.Context, f serveOptions) error {
	if f.maxConcurrent < 1 {
		return usagef("--max-concurrent: must be at least 1")
	}
	if f.shutdownTimeout < 0 {
		return usagef("--shutdown-timeout: must not be negative")
	}
	if f.stmtTimeout <= 0 || f.stmtTimeout > dumpsql.MaxTimeout {
		return usagef("--statement-timeout: between 1ms and %s", dumpsql.MaxTimeout)
	}
	var handler slog.Handler
	switch f.logFormat {
	case "text":
		handler = slog.NewTextHandler(a.stderr, nil)
	case "json":
		handler = slog.NewJSONHandler(a.stderr, nil)
	default:
		return usagef("--log-format %q: text or json", f.logFormat)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	auth := &serve.Auth{}
	if f.tokenFile != "" {
		if err := auth.LoadTokens(f.tokenFile); err != nil {
			return usagef("--token-file: %v", err)
		}
	}
	if f.basicFile != "" {
		if err := auth.LoadUsers(f.basicFile); err != nil {
			return usagef("--basic-file: %v", err)
		}
	}
	if (f.tokenFile != "" || f.basicFile != "") && !auth.Enabled() {
		return usagef("--token-file, --basic-file: no token or user in them")
	}
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return usagef("--listen %q: %v", f.listen, err)
	}
	if f.maxExports < 1 {
		return usagef("--max-exports: must be at least 1")
	}
	if f.exportParallel < 1 {
		return usagef("--export-parallel: must be at least 1")
	}
	if f.exportTTL <= 0 {
		return usagef("--export-ttl: must be more than 0")
	}
	if f.publicURL != "" {
		u, err := url.Parse(f.publicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return usagef("--public-url %q: scheme://host[:port], as https://fhir.example.org (no path, no user info)", printable(f.publicURL))
		}
		f.publicURL = u.Scheme + "://" + u.Host
	}
	if !fhirBase.MatchString(f.fhirBase) || path.Clean(f.fhirBase) != f.fhirBase {
		return usagef("--fhir-base %q: a path as /fhir or /fhir/r4 (letters, digits, . _ -; no / at the end)", f.fhirBase)
	}
	var smartClients *serve.SMART
	if f.smartClients != "" {
		if smartClients, err = serve.LoadClients(f.smartClients); err != nil {
			return usagef("--smart-clients: %v", err)
		}
	}
	authEnabled := auth.Enabled() || smartClients != nil
	if !authEnabled && !f.insecureNoAuth && !serve.IsLoopback(host) {
		return usagef("--listen %s: without --token-file, --basic-file or --smart-clients serve listens only on this machine (127.0.0.1, ::1, localhost); --insecure-no-auth to serve anyone", f.listen)
	}
	var tlsConfig *tls.Config
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return usagef("--tls-cert, --tls-key: %v", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, p := range f.allowSources {
		if source.URLScheme(p) == "" || !strings.Contains(p, "://") {
			return usagef("--allow-source %q: a URL prefix, as http://10.0.0.5:9000/ or file:///data/", p)
		}
		if !strings.HasSuffix(p, "/") {
			return usagef("--allow-source %q: a prefix ends in / (a folder, a host's root: s3://exports/ does not open s3://exports-secrets/)", p)
		}
	}
	dir, err := bulkimport.StateDir(f.stateDir, a.getenv)
	if err != nil {
		return usageError{err}
	}
	dsn := pg.ResolveDSN(a.db, a.getenv)
	conn, err := pg.Connect(ctx, dsn) // a wrong --db is one line now, not a 503 per request
	if err != nil {
		return err
	}
	id, err := pg.ReadIdentity(ctx, conn)
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	if f.exportDir == "" {
		// One folder per database: servers of other databases never meet.
		sum := sha256.Sum256([]byte(id.Key()))
		f.exportDir = filepath.Join(dir, "exports", unsafeChars.ReplaceAllString(id.Database, "_")+"-"+hex.EncodeToString(sum[:6]))
	}
	log := slog.New(handler)
	exports, err := serve.OpenExports(serve.ExportConfig{Dir: f.exportDir, TTL: f.exportTTL, Max: f.maxExports, Parallel: f.exportParallel, Base: f.fhirBase}, log)
	if err != nil {
		return fmt.Errorf("--export-dir: %v", err)
	}
	defer exports.Close()
	l, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %v", f.listen, err)
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	kind := "no authentication (this machine only)"
	switch {
	case !authEnabled && f.insecureNoAuth:
		kind = "NO AUTHENTICATION (--insecure-no-auth)"
	case authEnabled:
		kind = "authentication required"
	}
	log.Info(fmt.Sprintf("listening on %s://%s, %s", scheme, l.Addr(), kind))
	s := serve.New(serve.Config{DSN: dsn, Auth: auth, MaxConcurrent: f.maxConcurrent, ShutdownTimeout: f.shutdownTimeout, StatementTimeout: f.stmtTimeout,
		Sources: &serve.Sources{Allow: f.allowSources}, Store: &bulkimport.Store{Dir: dir, Live: &bulkimport.Live{}}, SMART: smartClients, Exports: exports, PublicURL: f.publicURL, Log: log, TLS: tlsConfig})
	if err := s.Run(ctx, l); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// unsafeChars are those a database's name loses in a folder's name.
var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// fhirBase is what --fhir-base may be.
var fhirBase = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)+$`)
