// Package pg connects to PostgreSQL, owns the Aidbox storage layout (the DDL
// of resource tables) and decodes raw COPY streams.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
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

// Connect opens one connection. The session runs with TimeZone=UTC and
// DateStyle=ISO so that any timestamp the server formats is unambiguous.
// Errors never carry the password.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx masks the password in its parse errors already; the message is
		// still long and technical, so say which input was at fault.
		return nil, fmt.Errorf("bad connection string (--db, DATABASE_URL or PG* variables): %s", redact(err.Error(), ""))
	}
	password := cfg.Password
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "fhirbulk"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	// On Ctrl-C ask the server to cancel the running statement (a COPY can
	// otherwise keep a backend busy until it notices the closed socket), and
	// give up on the socket shortly after.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errors.New(redact(connectMessage(err), password))
	}
	return conn, nil
}

// connectMessage makes pgx's connect error one line ("cannot connect to
// PostgreSQL `user=u database=d`: host:port (addr): reason"); with several
// hosts pgx puts each attempt on a line of its own.
func connectMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "failed to connect to ")
	msg = strings.ReplaceAll(msg, "\n\t", "; ")
	msg = strings.ReplaceAll(msg, ":; ", ": ")
	// sslmode=prefer tries each host twice (TLS, then plain) with the same
	// failure; say it once.
	parts := strings.Split(strings.ReplaceAll(msg, "\n", " "), "; ")
	kept := parts[:1]
	for _, p := range parts[1:] {
		if p != kept[len(kept)-1] {
			kept = append(kept, p)
		}
	}
	return "cannot connect to PostgreSQL " + strings.Join(kept, "; ")
}

// redact removes a password from a message, in case a driver ever echoes it.
func redact(msg, password string) string {
	if password != "" {
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
func ErrorLine(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err.Error()
	}
	s := pgErr.Message
	if pgErr.Detail != "" {
		s += " (" + pgErr.Detail + ")"
	}
	if pgErr.Position > 0 {
		s += fmt.Sprintf(" at position %d", pgErr.Position)
	}
	return s + " (SQLSTATE " + pgErr.Code + ")"
}
