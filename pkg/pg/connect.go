// Package pg is fhirbulk's PostgreSQL plumbing: it resolves and opens
// connections (Connect), turns server errors into one-line messages (Wrap),
// says which database a connection is on (Identity, Where), shares a
// snapshot between connections (Snapshot, BeginReadOnly), and encodes and
// decodes binary COPY streams (BinaryRows, AppendTuple and its kin). What a
// resource row is, and the Aidbox tables, are package store's.
package pg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// ResolveDSN picks the connection string: the --db flag, else DATABASE_URL,
// else "" which makes pgx read the libpq variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE, PGSSLMODE, ~/.pgpass, ...).
func ResolveDSN(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	return getenv("DATABASE_URL")
}

// ConfigError is a connection string that cannot be used: a usage error,
// since the string comes from the user (the caller knows from where).
// Exactly one of Scheme, Word and Err says what is wrong.
type ConfigError struct {
	Scheme string // the URL's scheme, not postgres:// (mysql)
	Word   string // the whole string, one word: most often a database name
	Err    error  // pgx's parse error (a *pgconn.ParseConfigError, its password masked)
}

func (e *ConfigError) Error() string {
	switch {
	case e.Scheme != "":
		return fmt.Sprintf("bad connection string: a %s:// URL; want postgres://HOST:PORT/DATABASE", e.Scheme)
	case e.Word != "":
		return fmt.Sprintf("bad connection string %q: not a URL (postgres://HOST:PORT/DATABASE) nor keyword=value pairs (host=HOST dbname=DATABASE); for the database %s give dbname=%s", e.Word, e.Word, e.Word)
	}
	return "bad connection string: " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ConnectError is a connection that could not be made: where to, why (one
// line, the real cause first, no password), and pgx's error, kept whole:
// errors.As finds the server's *pgconn.PgError in it (a wrong password:
// SQLSTATE 28P01).
type ConnectError struct {
	Where        string // as Where says it: database "d" as user "u" at host:port
	Reason       string
	Unconfigured bool // nothing named a server: no connection string, no libpq variable
	Err          error
}

func (e *ConnectError) Error() string {
	return "cannot connect to PostgreSQL " + e.Where + ": " + e.Reason
}

func (e *ConnectError) Unwrap() error { return e.Err }

// bareWord is a connection string that is one word: no URL, no key=value
// (and nothing secret to hide: no '@', ':' or '=').
var bareWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// readBufferSize is how much one read of the server's socket may take: pgx
// reads 8 KiB at a time, so a dump of a large table made ten times the
// read system calls psql does (its buffer grows with the data).
const readBufferSize = 256 << 10

// DefaultConnectTimeout bounds a connection attempt when the connection
// string sets no connect_timeout.
const DefaultConnectTimeout = 15 * time.Second

// ParseDSN reads a connection string as Connect will, or fails with a
// *ConfigError: a malformed string, a URL of another scheme (mysql://).
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	if scheme, _, ok := strings.Cut(dsn, "://"); ok && !strings.ContainsAny(scheme, " =") {
		s := strings.ToLower(scheme)
		if s != "postgres" && s != "postgresql" {
			return nil, &ConfigError{Scheme: s}
		}
		dsn = s + dsn[len(scheme):] // schemes are case-insensitive; pgx wants them lowercase
	}
	if bareWord.MatchString(dsn) {
		// pgx says only "invalid keyword/value": most often a database
		// name given where a connection string goes.
		return nil, &ConfigError{Word: dsn}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, &ConfigError{Err: err} // pgx masks the password in its parse errors
	}
	return cfg, nil
}

// Connect opens one connection. The session runs with TimeZone=UTC and
// DateStyle=ISO so that any timestamp the server formats is unambiguous.
// An attempt that gets no answer gives up after connect_timeout
// (DefaultConnectTimeout when not set). Errors are one line that names
// the database and server and gives the real cause first; they never carry
// the password.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	return ConnectWith(ctx, dsn, nil)
}

// ConnectWith is Connect with settings (GUCs) sent in the startup packet:
// they rule from the session's first moment, over the role's and the
// database's own (ALTER ROLE ... SET), with no statement to run (one that
// a role's 1 ms statement_timeout could cancel).
func ConnectWith(ctx context.Context, dsn string, settings map[string]string) (*pgx.Conn, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	for k, v := range settings {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "fhirbulk"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	// On Ctrl-C ask the server to cancel the running statement (a COPY can
	// otherwise keep a backend busy until it notices the closed socket), and
	// give up on the socket shortly after.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnectError{Where: redact(Where(&cfg.Config), cfg.Password), Reason: redact(connectReason(err, cfg), cfg.Password),
			Unconfigured: !Configured(dsn), Err: err}
	}
	return conn, nil
}

// Where names the database and server of a configuration, for messages:
// database "d" as user "u" at host:port.
func Where(cfg *pgconn.Config) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = "socket " + host
	}
	db := cfg.Database
	if db == "" {
		db = cfg.User // the server's default, as libpq's
	}
	return fmt.Sprintf("database %q as user %q at %s:%d", db, cfg.User, host, cfg.Port)
}

// connectReason is why pgx's connect failed, one line, the real cause
// first. pgx tries each address, and each twice with sslmode=prefer (TLS,
// then plain): a server's own answer (a wrong password) says more than a
// network error, and a network error more than a failure of another kind
// (a refused TLS handshake), which is said only when nothing else is.
func connectReason(err error, cfg *pgx.ConnConfig) string {
	var ce *pgconn.ConnectError
	inner := err
	if errors.As(err, &ce) {
		inner = ce.Unwrap()
	}
	attempts := []error{inner}
	if j, ok := inner.(interface{ Unwrap() []error }); ok {
		attempts = j.Unwrap()
	}
	for _, a := range attempts {
		var pgErr *pgconn.PgError
		if errors.As(a, &pgErr) {
			return pgErr.Message
		}
	}
	var reasons, others []string
	for _, a := range attempts {
		r, known := attemptReason(a, cfg)
		list := &reasons
		if !known {
			list = &others
		}
		if len(*list) == 0 || (*list)[len(*list)-1] != r {
			*list = append(*list, r)
		}
	}
	if len(reasons) == 0 {
		reasons = others
	}
	return strings.Join(reasons, "; ")
}

// attemptReason is why one attempt to connect failed, and whether it is a
// cause known by its type (the network's, a timeout, a server that speaks
// another protocol).
func attemptReason(a error, cfg *pgx.ConnConfig) (string, bool) {
	var tooLong *pgproto3.ExceededMaxBodyLenErr
	var errno syscall.Errno
	var dns *net.DNSError
	switch {
	case errors.As(a, &tooLong):
		// The first bytes of the answer read as a message length: the
		// server does not speak PostgreSQL's protocol.
		if n := tooLong.ActualBodyLen + 4; string([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) == "TTP/" { // after an 'H': "HTTP/1.1 400 ..."
			return "the server there answers in HTTP, not PostgreSQL's protocol (a web server's port? PostgreSQL's is usually 5432)", true
		}
		return "the server there does not speak PostgreSQL's protocol (is it the right port? PostgreSQL's is usually 5432)", true
	case errors.Is(a, context.DeadlineExceeded) || isTimeout(a):
		return fmt.Sprintf("no answer within %s (connect_timeout)", cfg.ConnectTimeout), true
	case errors.As(a, &errno):
		return errno.Error(), true // connection refused
	case errors.As(a, &dns):
		return dns.Err, true // no such host
	}
	// pgx says which address it tried ("host:port (host): ..."): Where
	// says it already.
	if cause := errors.Unwrap(a); cause != nil {
		return cause.Error(), false
	}
	return a.Error(), false
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// libpqVariables reports whether any libpq variable that picks a server or
// database is set.
func libpqVariables() bool {
	for _, v := range []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSERVICEFILE"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// redact removes a password from a message, in case a driver ever echoes
// it. A very short password is left alone: replacing it everywhere would
// mangle the message, and pgx's messages do not carry it.
func redact(msg, password string) string {
	if len(password) >= 4 {
		msg = strings.ReplaceAll(msg, password, "xxxxx")
	}
	return msg
}

// BeginReadOnly starts a REPEATABLE READ, READ ONLY transaction: every
// statement in it sees the database at one instant, the snapshot it takes
// at its first statement.
func BeginReadOnly(ctx context.Context, conn *pgx.Conn) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	return tx, Wrap(err)
}

// IsUndefinedTable reports whether err is PostgreSQL's "relation does not exist".
func IsUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// ServerError is an error PostgreSQL sent, shown as one line (ErrorLine);
// errors.As still finds the *pgconn.PgError, with its code, inside.
type ServerError struct{ Err *pgconn.PgError }

func (e *ServerError) Error() string { return ErrorLine(e.Err) }
func (e *ServerError) Unwrap() error { return e.Err }

// Wrap returns err with a server error in it made a *ServerError; other
// errors (and nil) come back as they are.
func Wrap(err error) error {
	var pgErr *pgconn.PgError
	var se *ServerError
	if errors.As(err, &se) || !errors.As(err, &pgErr) {
		return err
	}
	return &ServerError{Err: pgErr}
}

// ErrorLine renders a server error as one line: message, detail, position.
// Values the server quotes are cut (ndjson.ClipQuoted): its "Token ... is
// invalid" quotes the whole bad token, which may be megabytes of a
// resource.
func ErrorLine(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err.Error()
	}
	s := ndjson.ClipQuoted(pgErr.Message)
	if pgErr.Detail != "" {
		s += " (" + ndjson.ClipQuoted(pgErr.Detail) + ")"
	}
	if pgErr.Position > 0 {
		s += fmt.Sprintf(" at position %d", pgErr.Position)
	}
	return s + " (SQLSTATE " + pgErr.Code + ")"
}

// Configured reports whether a connection was asked for: dsn (from --db or
// DATABASE_URL) is set, or a libpq variable that picks a server or database.
func Configured(dsn string) bool { return dsn != "" || libpqVariables() }
