package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkclient"
	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// pullFlags are import's flags for a pull from a server's $export.
type pullFlags struct {
	kickOff      bool
	types        []string
	since        string
	until        string
	typeFilters  []string
	elements     []string
	outputFormat string
	patients     []string
	params       []string
	lenient      bool
	post         bool
	clientID     string
	privateKey   string
	keyID        string
	scope        string
	tokenURL     string
	bearerFile   string
	keepExport   bool
	timeout      time.Duration
	timeoutSet   bool // --export-timeout given
	cancel       string
	// Hidden: a detached pull reads basic auth's password on stdin.
	passwordStdin bool
}

// passwordEnv gives basic auth's password to --resume ID and --cancel ID
// (it is never recorded); a detached pull gets it on its stdin (hidden
// --password-stdin), never in its arguments or environment.
const passwordEnv = "FHIRBULK_PULL_PASSWORD"

func (f *pullFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.BoolVar(&f.kickOff, "kick-off", false, "URL is a Bulk Data kick-off endpoint even though its path does not end in $export")
	fl.StringSliceVar(&f.types, "type", nil, "export only these resource `TYPES` (_type; comma-separated or repeated)")
	fl.StringVar(&f.since, "since", "", "only resources changed after `TIME` (_since; RFC 3339), or \"last\": after the last completed pull of the same request")
	fl.StringVar(&f.until, "until", "", "only resources changed up to `TIME` (_until; RFC 3339)")
	fl.StringArrayVar(&f.typeFilters, "type-filter", nil, "a FHIR search `QUERY` that filters one type, as Observation?status=final (_typeFilter; repeatable)")
	fl.StringSliceVar(&f.elements, "elements", nil, "export only these `ELEMENTS` (_elements; comma-separated)")
	fl.StringVar(&f.outputFormat, "output-format", "application/fhir+ndjson", "the export's `FORMAT` (_outputFormat)")
	fl.StringArrayVar(&f.patients, "patient", nil, "export only this patient's data (`REF` as Patient/ID or ID; repeatable; with --post)")
	fl.StringArrayVar(&f.params, "param", nil, "another kick-off parameter `NAME=VALUE` (repeatable)")
	fl.BoolVar(&f.lenient, "lenient", false, "ask the server to ignore parameters it does not support (Prefer: handling=lenient)")
	fl.BoolVar(&f.post, "post", false, "kick off with POST and a Parameters resource (default GET)")
	fl.StringVar(&f.clientID, "client-id", "", "SMART Backend Services client `ID` (with --private-key)")
	fl.StringVar(&f.privateKey, "private-key", "", "the client's private key `FILE`: PEM, a JWK or a JWKS (RS384 or ES384)")
	fl.StringVar(&f.keyID, "key-id", "", "the key's `KID` (to pick one of a JWKS; sent in the JWT header)")
	fl.StringVar(&f.scope, "scope", "system/*.read", "the `SCOPE` asked of the token endpoint")
	fl.StringVar(&f.tokenURL, "token-url", "", "the token endpoint `URL` (default: found at the server's .well-known/smart-configuration)")
	fl.StringVar(&f.bearerFile, "bearer-token-file", "", "send the bearer token in `FILE` (instead of SMART)")
	fl.BoolVar(&f.keepExport, "keep-export", false, "do not release the server's export (DELETE) once every file is in")
	fl.DurationVar(&f.timeout, "export-timeout", 24*time.Hour, "give up when the server's export has not completed `DURATION` after the kick-off")
	fl.StringVar(&f.cancel, "cancel", "", "cancel pull `ID` at the server (DELETE) and stop it")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "")
	fl.MarkHidden("password-stdin") // the flag exists
	mustComplete(c, "private-key", completeFiles("pem", "json", "jwk", "jwks"))
	mustComplete(c, "bearer-token-file", completeFiles())
}

// pullOnly names the pull flags given, for a command that is no pull.
func (f *pullFlags) given(c *cobra.Command) []string {
	var names []string
	for _, n := range []string{"kick-off", "type", "since", "until", "type-filter", "elements", "output-format", "patient", "param",
		"lenient", "post", "client-id", "private-key", "key-id", "scope", "token-url", "bearer-token-file", "keep-export", "export-timeout"} {
		if c.Flags().Changed(n) {
			names = append(names, "--"+n)
		}
	}
	return names
}

// changed notes which flags were given.
func (f *pullFlags) changed(c *cobra.Command) { f.timeoutSet = c.Flags().Changed("export-timeout") }

// request is the pull asked by the flags of URL raw.
func (f *pullFlags) request(raw string) (bulkimport.PullRequest, string, error) {
	var req bulkimport.PullRequest
	clean, user, password, basic, err := bulkclient.Split(raw)
	if err != nil {
		return req, "", usageError{err}
	}
	auth, err := f.auth()
	if err != nil {
		return req, "", err
	}
	if basic {
		if auth != (bulkimport.PullAuth{}) {
			return req, "", usagef("a user and password in the URL, or --client-id/--private-key or --bearer-token-file: give one")
		}
		auth.BasicUser = user
	}
	if f.timeout <= 0 {
		return req, "", usagef("--export-timeout: must be positive")
	}
	if len(f.patients) > 0 && !f.post {
		return req, "", usagef("--patient is sent only in a POST kick-off: add --post")
	}
	kick := bulkclient.Request{URL: clean, Post: f.post, Lenient: f.lenient}
	add := func(name, value string) {
		kick.Params = append(kick.Params, bulkclient.Param{Name: name, Value: value})
	}
	add("_outputFormat", f.outputFormat)
	if len(f.types) > 0 {
		add("_type", strings.Join(f.types, ","))
	}
	sinceLast := f.since == "last"
	for _, t := range []struct{ flag, name, v string }{{"since", "_since", f.since}, {"until", "_until", f.until}} {
		if t.v == "" || t.v == "last" && t.flag == "since" {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, t.v); err != nil {
			return req, "", usagef("--%s %q: not a time as 2026-12-01T00:00:00Z%s", t.flag, t.v, map[bool]string{true: ` or "last"`}[t.flag == "since"])
		}
		add(t.name, t.v)
	}
	for _, q := range f.typeFilters {
		if !strings.Contains(q, "?") {
			return req, "", usagef("--type-filter %q: not TYPE?QUERY", q)
		}
		add("_typeFilter", q)
	}
	if len(f.elements) > 0 {
		add("_elements", strings.Join(f.elements, ","))
	}
	for _, p := range f.patients {
		add("patient", p)
	}
	for _, p := range f.params {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return req, "", usagef("--param %q: not NAME=VALUE", p)
		}
		add(name, value)
	}
	return bulkimport.PullRequest{KickOff: kick, Auth: auth, SinceLast: sinceLast, KeepExport: f.keepExport, Timeout: f.timeout}, password, nil
}

// auth is how the flags say to authenticate (no secret: paths).
func (f *pullFlags) auth() (bulkimport.PullAuth, error) {
	var a bulkimport.PullAuth
	switch {
	case f.bearerFile != "" && (f.privateKey != "" || f.clientID != ""):
		return a, usagef("--bearer-token-file, or --client-id with --private-key: give one")
	case (f.privateKey != "") != (f.clientID != ""):
		return a, usagef("--client-id and --private-key go together (SMART Backend Services)")
	case f.privateKey == "" && (f.keyID != "" || f.tokenURL != ""):
		return a, usagef("--key-id and --token-url are for SMART Backend Services: add --client-id and --private-key")
	}
	if f.tokenURL != "" {
		_, _, _, userinfo, err := bulkclient.Split(f.tokenURL)
		switch {
		case err != nil:
			return a, usagef("--token-url: %v", err)
		case userinfo:
			return a, usagef("--token-url %s: a user and password in it are not sent (SMART authenticates with the key)", source.Redact(f.tokenURL))
		}
	}
	for _, p := range []*string{&f.privateKey, &f.bearerFile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return a, err
			}
			*p = abs
		}
	}
	a = bulkimport.PullAuth{ClientID: f.clientID, PrivateKey: f.privateKey, KeyID: f.keyID, TokenURL: f.tokenURL, BearerFile: f.bearerFile}
	if f.privateKey != "" {
		a.Scope = f.scope
		// The key is read now: a wrong file is one line before anything
		// starts (and before a detached process).
		if _, err := bulkimport.OpenKey(a); err != nil {
			return a, usageError{err}
		}
	} else if f.bearerFile != "" {
		if _, err := bulkimport.ReadToken(f.bearerFile); err != nil {
			return a, usageError{err}
		}
	}
	return a, nil
}

// isPull reports whether import's argument is a server's kick-off
// endpoint.
func (f *pullFlags) isPull(arg string) bool {
	return f.kickOff || bulkclient.IsKickOff(arg)
}

// runPull imports from the server whose kick-off URL raw is, or goes on
// with pull id (resume).
func (a *app) runPull(ctx context.Context, f importOptions, raw, resume string, opts bulkimport.Options) error {
	store := opts.Store
	var plan *bulkimport.PullPlan
	password := a.getenv(passwordEnv)
	if f.pull.passwordStdin {
		data, err := io.ReadAll(io.LimitReader(a.stdin, 64<<10))
		if err != nil {
			return err
		}
		password = strings.TrimSuffix(string(data), "\n")
	}
	if resume != "" {
		auth, err := f.pull.auth()
		if err != nil {
			return err
		}
		timeout := time.Duration(0)
		if f.pull.timeoutSet {
			timeout = f.pull.timeout
		}
		if plan, err = store.ResumePull(resume, auth, timeout, f.pull.keepExport); err != nil {
			return err
		}
	} else {
		req, pw, err := f.pull.request(raw)
		if err != nil {
			return err
		}
		password = pw
		if plan, err = store.PlanPull(req, opts.DB, time.Now()); err != nil {
			return err
		}
		switch {
		case plan.Resumed:
			fmt.Fprintf(a.stderr, "fhirbulk: import %s goes on with the same export (no new kick-off)\n", plan.ID)
		case plan.Since != "":
			fmt.Fprintf(a.stderr, "fhirbulk: --since last: changes since %s\n", plan.Since)
		case f.pull.since == "last":
			fmt.Fprintln(a.stderr, "fhirbulk: --since last: no earlier pull of this request; pulling everything")
		}
	}
	po := bulkimport.PullOptions{Password: password, Auth: bulkimport.OpenAuth(nil)}
	if f.detach {
		if err := plan.Record(store); err != nil {
			return err
		}
		return a.detachPull(ctx, store, plan.ID, f, opts.DSN, password)
	}
	bar := a.startImportDisplay()
	opts.Warn = func(err error) { bar.warn(a.stderr, "fhirbulk: "+message(err, true)) }
	opts.Progress = bar.progressFunc()
	st, err := bulkimport.Pull(ctx, plan, opts, po)
	bar.stop()
	if st == nil {
		return err
	}
	out, _ := json.MarshalIndent(st, "", "  ")
	if _, werr := fmt.Fprintln(a.stdout, string(out)); werr != nil {
		return werr
	}
	switch {
	case err != nil:
		return err
	case st.Status == bulkimport.StatusInterrupted:
		fmt.Fprintf(a.stderr, "fhirbulk: import %s stopped; the server keeps its export: fhirbulk import --resume %s goes on (fhirbulk status %s --cancel releases it)\n", st.ID, st.ID, st.ID)
		return ctx.Err()
	}
	return st.Err()
}

// detachPull runs pull id (recorded) in a background process.
func (a *app) detachPull(ctx context.Context, store bulkimport.Store, id string, f importOptions, dsn, password string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"import", "--resume", id, "-q", "--state-dir", store.Dir, "--password-stdin", "--parallel", strconv.Itoa(f.parallel),
		"--max-errors", strconv.Itoa(f.maxErrors),
		"--max-line-size", strconv.FormatInt(int64(f.read.maxLine), 10), "--http-idle-timeout", f.read.idleTimeout.String()}
	for flag, on := range map[string]bool{"--fhir": f.fhir, "--aidbox": f.aidbox, "--preserve-meta": f.preserveMeta, "--no-format-check": f.noFmtCheck} {
		if on {
			args = append(args, flag)
		}
	}
	env := append(os.Environ(), "DATABASE_URL="+dsn)
	d, err := store.Detach(ctx, id, []byte(password), exe, args, env)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, id)
	if d.Ended {
		fmt.Fprintf(a.stderr, "import %s ran in the background and has ended; see: fhirbulk status %s\n", id, id)
	} else {
		fmt.Fprintf(a.stderr, "import %s runs in the background (pid %d); follow it with: fhirbulk status %s --watch\n", id, d.PID, id)
	}
	return nil
}

// runCancel cancels pull id at the server.
func (a *app) runCancel(ctx context.Context, stateDir, id string) error {
	if err := bulkimport.CheckID(id); err != nil {
		return usagef("--cancel %q: %v", id, err)
	}
	dir, err := bulkimport.StateDir(stateDir, a.getenv)
	if err != nil {
		return usageError{err}
	}
	st, err := bulkimport.CancelPull(ctx, bulkimport.Store{Dir: dir}, id,
		bulkimport.PullOptions{Password: a.getenv(passwordEnv), Auth: bulkimport.OpenAuth(nil)})
	if err != nil {
		return err
	}
	done, n := st.Done()
	fmt.Fprintf(a.stderr, "import %s cancelled at the server (%d of %d files were loaded: %d resources)\n", st.ID, done, len(st.Inputs), n)
	return nil
}

// pullHint words what a pull's failure needs from the person.
func pullHint(err error) string {
	var be *bulkclient.Error
	var ae *bulkimport.AuthError
	var pe *bulkimport.PullError
	switch {
	case errors.As(err, &ae) && ae.Flag != "":
		return " (--" + ae.Flag + ")"
	case errors.As(err, &pe) && pe.Expired:
		return ": start a new export with fhirbulk import URL"
	case errors.As(err, &be) && be.MethodRefused:
		return " (the server may take a POST kick-off: add --post)"
	case errors.As(err, &be) && be.NotBulk:
		return " (a kick-off URL ends in /$export, /Patient/$export or /Group/ID/$export)"
	case errors.As(err, &be) && (be.Status == 401 || be.Status == 403) && be.Op == "kick-off" && errors.As(err, &pe) && pe.NoAuth:
		return " (SMART: --client-id and --private-key; or --bearer-token-file)"
	}
	return ""
}
