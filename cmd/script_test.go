package cmd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// The end-to-end tests: every testdata/script/*.txtar runs the real binary
// against a database of its own, created for it and dropped afterwards,
// named FHIRBULK_TEST_DB_PREFIX (default fhirbulk_test), _ and 8 random hex
// digits ($TEST_DB_NAME in the script, the prefix $TEST_DB_PREFIX).
// The server is FHIRBULK_TEST_DATABASE_URL, else DATABASE_URL, else
// 127.0.0.1:5432 as the current OS user (scripts/test.sh arranges one).

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"fhirbulk": func() { os.Exit(Run()) },
	})
}

func adminURL() (string, bool) {
	if u := os.Getenv("FHIRBULK_TEST_DATABASE_URL"); u != "" {
		return u, true
	}
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, true
	}
	return "postgres://127.0.0.1:5432/postgres?sslmode=disable", false
}

// testServer is the test database server's admin URL and configuration;
// the test is skipped when there is none and none was named.
func testServer(t *testing.T) (string, *pgx.ConnConfig) {
	t.Helper()
	admin, explicit := adminURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		if explicit {
			t.Fatalf("test database server: %v", err)
		}
		t.Skipf("no PostgreSQL at 127.0.0.1:5432 and FHIRBULK_TEST_DATABASE_URL unset: run scripts/test.sh, which provides one (%v)", err)
	}
	defer conn.Close(ctx)
	return admin, conn.Config()
}

func TestScripts(t *testing.T) {
	admin, cfg := testServer(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "../testdata/script",
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			if cond == "shared" { // the real data sets of ../shared/data are here
				_, err := os.Stat("../../shared/data/README.md")
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Setup: func(env *testscript.Env) error {
			return setupDatabase(env, admin, cfg)
		},
		Cmds: scriptCmds(),
	})
}

// scriptCmds are the commands the scripts may use beyond testscript's own.
func scriptCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	cmds := map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"sql":        cmdSQL,
		"tables":     cmdTables,
		"rows":       cmdRows,
		"gunzip":     cmdGunzip,
		"copyin":     cmdCopyIn,
		"bigline":    cmdBigLine,
		"freshdb":    cmdFreshDB,
		"nosessions": cmdNoSessions,
		"csvread":    cmdCSVRead,
		"copyfrom":   cmdCopyFromText,
		"notable":    cmdNoTable,
		"waitsql":    cmdWaitSQL,
		"locktables": cmdLockTables,
		"unlock":     cmdUnlock,
		"waitfile":   cmdWaitFile,
		"waitexec":   cmdWaitExec,
		"exitcode":   cmdExitCode,
	}
	for name, f := range httpdCmds() {
		cmds[name] = f
	}
	for name, f := range exportCmds() {
		cmds[name] = f
	}
	for name, f := range s3Cmds() {
		cmds[name] = f
	}
	for name, f := range faultCmds() {
		cmds[name] = f
	}
	for name, f := range bulkServerCmds() {
		cmds[name] = f
	}
	return cmds
}

// setupDatabase creates the script's own database and points DATABASE_URL
// (and only it) at it.
func setupDatabase(env *testscript.Env, admin string, cfg *pgx.ConnConfig) error {
	env.Values["admin"] = admin
	env.Values["cfg"] = cfg
	held := &heldLocks{}
	env.Values["held"] = held
	env.Defer(held.release)
	name, u, err := createDatabase(admin, cfg, "", env.Defer, env.T().Log)
	if err != nil {
		return err
	}
	env.Setenv("DATABASE_URL", u)
	sample, err := filepath.Abs("../testdata/sample")
	if err != nil {
		return err
	}
	env.Setenv("SAMPLE", sample)
	// The default state folder (import's, serve's exports) inside the
	// script's own folder, not under HOME (testscript's /no-home).
	env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, ".state"))
	// The real data sets beside the repository, when present (scripts skip without them).
	if shared, err := filepath.Abs("../../shared/data"); err == nil {
		if _, err := os.Stat(shared); err == nil {
			env.Setenv("SHARED_DATA", shared)
		}
	}
	env.Setenv("TEST_DB_NAME", name)
	prefix, _ := testDBPrefix() // createDatabase checked it
	env.Setenv("TEST_DB_PREFIX", prefix)
	env.Setenv("TEST_DB_HOST", cfg.Host)
	env.Setenv("TEST_DB_PORT", strconv.Itoa(int(cfg.Port)))
	env.Setenv("TEST_DB_USER", cfg.User)
	return nil
}

// testDBPrefixRE is what FHIRBULK_TEST_DB_PREFIX may be: a plain lowercase
// identifier (so no quoting, and no regexp metacharacter in the scripts that
// match names made of it), short enough that PREFIX_12345678_reader, the
// longest name made of it (readrole), fits PostgreSQL's 63 bytes.
var testDBPrefixRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// testDBPrefix is the start of the tests' database names:
// FHIRBULK_TEST_DB_PREFIX, else fhirbulk_test (the names are PREFIX_ and 8
// random hex digits).
func testDBPrefix() (string, error) {
	p := os.Getenv("FHIRBULK_TEST_DB_PREFIX")
	if p == "" {
		return "fhirbulk_test", nil
	}
	if !testDBPrefixRE.MatchString(p) {
		return "", fmt.Errorf("FHIRBULK_TEST_DB_PREFIX=%q: want 1 to 40 of a-z, 0-9 and _, not starting with a digit", p)
	}
	return p, nil
}

// createDatabase makes a database of a random name (with the ICU
// collation icuLocale, when not ""), dropped by the function it hands to
// deferFn, and returns its name and URL.
func createDatabase(admin string, cfg *pgx.ConnConfig, icuLocale string, deferFn func(func()), logf func(...any)) (string, string, error) {
	prefix, err := testDBPrefix()
	if err != nil {
		return "", "", err
	}
	var r [4]byte
	rand.Read(r[:])
	name := prefix + "_" + hex.EncodeToString(r[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", "", err
	}
	defer conn.Close(ctx)
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if icuLocale != "" {
		create += " TEMPLATE template0 LOCALE_PROVIDER icu LOCALE 'C.UTF-8' ICU_LOCALE " + pgx.Identifier{icuLocale}.Sanitize()
	}
	if _, err := conn.Exec(ctx, create); err != nil {
		return "", "", err
	}
	deferFn(func() {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			logf("drop test database:", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			logf("drop test database:", err)
		}
	})
	u := url.URL{Scheme: "postgres", Host: cfg.Host + ":" + strconv.Itoa(int(cfg.Port)), Path: "/" + name}
	if strings.HasPrefix(cfg.Host, "/") {
		u.Host = ""
		u.RawQuery = "host=" + url.QueryEscape(cfg.Host) + "&port=" + strconv.Itoa(int(cfg.Port))
	}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	} else {
		u.User = url.User(cfg.User)
	}
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return name, u.String(), nil
}

// freshdb VAR [ICU_LOCALE] creates another empty database for this script
// (of that ICU collation, when given) and sets VAR to its URL.
func cmdFreshDB(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 && len(args) != 2 {
		ts.Fatalf("usage: freshdb VAR [ICU_LOCALE]")
	}
	locale := ""
	if len(args) == 2 {
		locale = args[1]
	}
	_, u, err := createDatabase(ts.Value("admin").(string), ts.Value("cfg").(*pgx.ConnConfig), locale, ts.Defer, func(a ...any) { ts.Logf("%v", a) })
	ts.Check(err)
	ts.Setenv(args[0], u)
}

// csvread FILE parses FILE with encoding/csv and prints each record as a
// JSON array of strings, one per line.
func cmdCSVRead(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: csvread FILE")
	}
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return
		}
		ts.Check(err)
		b, _ := json.Marshal(rec)
		fmt.Fprintln(ts.Stdout(), string(b))
	}
}

// copyfrom TABLE FILE loads FILE into TABLE with COPY FROM STDIN in
// PostgreSQL's text format, as psql's \copy does.
func cmdCopyFromText(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: copyfrom TABLE FILE")
	}
	f, err := os.Open(ts.MkAbs(args[1]))
	ts.Check(err)
	defer f.Close()
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	_, err = conn.PgConn().CopyFrom(context.Background(), f, "COPY "+pgx.Identifier{args[0]}.Sanitize()+" FROM STDIN")
	if neg {
		if err == nil {
			ts.Fatalf("copyfrom: unexpected success")
		}
		return
	}
	ts.Check(err)
}

func scriptConn(ts *testscript.TestScript) *pgx.Conn {
	conn, err := pgx.Connect(context.Background(), ts.Getenv("DATABASE_URL"))
	ts.Check(err)
	return conn
}

// sql STATEMENT... runs the statements (several may be given, or one
// argument with several separated by semicolons) and writes every result
// row to stdout, columns separated by tabs, NULL as NULL.
// `sql -f FILE` reads the statements from a file.
func cmdSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: sql STATEMENT... | sql -f FILE")
	}
	text := strings.Join(args, ";\n")
	if args[0] == "-f" && len(args) == 2 {
		text = ts.ReadFile(args[1])
	}
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	results, err := conn.PgConn().Exec(context.Background(), text).ReadAll()
	if err != nil {
		if neg {
			fmt.Fprintln(ts.Stderr(), err)
			return
		}
		ts.Fatalf("sql: %v", err)
	}
	if neg {
		ts.Fatalf("sql: unexpected success")
	}
	for _, r := range results {
		for _, row := range r.Rows {
			cells := make([]string, len(row))
			for i, v := range row {
				if v == nil {
					cells[i] = "NULL"
				} else {
					cells[i] = string(v)
				}
			}
			fmt.Fprintln(ts.Stdout(), strings.Join(cells, "\t"))
		}
	}
}

// tables TYPE... creates the storage layout for each type.
func cmdTables(ts *testscript.TestScript, neg bool, args []string) {
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	for _, t := range args {
		err := store.EnsureTables(context.Background(), conn, t)
		if neg {
			if err == nil {
				ts.Fatalf("tables %s: unexpected success", t)
			}
			continue
		}
		ts.Check(err)
	}
}

// rows TABLE N asserts that TABLE holds exactly N rows.
func cmdRows(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: rows TABLE N")
	}
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	var n int64
	ts.Check(conn.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{args[0]}.Sanitize()).Scan(&n))
	want, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	if (n == want) == neg {
		ts.Fatalf("table %s has %d rows, want %s%d", args[0], n, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// gunzip IN OUT decompresses IN into OUT; it fails on a truncated or corrupt stream.
func cmdGunzip(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: gunzip IN OUT")
	}
	in, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	var out bytes.Buffer
	zr, err := gzip.NewReader(bytes.NewReader(in))
	if err == nil {
		_, err = io.Copy(&out, zr)
	}
	if neg {
		if err == nil {
			ts.Fatalf("gunzip %s: unexpected success", args[0])
		}
		return
	}
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), out.Bytes(), 0o644))
}

// copyin TABLE FILE creates TABLE (n bigint, line text) when missing and
// copies FILE's lines into it, numbered on from the lines already there
// (gzip is detected). The lines travel in
// binary COPY, so no byte of them is escaped or changed on the way.
func cmdCopyIn(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: copyin TABLE FILE")
	}
	f, err := os.Open(ts.MkAbs(args[1]))
	ts.Check(err)
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		ts.Check(err)
		r = zr
	}
	var rows [][]any
	lr := bufio.NewReaderSize(r, 1<<20)
	for n := int64(1); ; n++ {
		line, err := lr.ReadString('\n')
		if line != "" {
			rows = append(rows, []any{n, strings.TrimSuffix(line, "\n")})
		}
		if err == io.EOF {
			break
		}
		ts.Check(err)
	}
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	ctx := context.Background()
	table := pgx.Identifier{args[0]}
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table.Sanitize()+" (n bigint, line text)")
	ts.Check(err)
	// Numbering goes on after the lines already in the table.
	var last int64
	ts.Check(conn.QueryRow(ctx, "SELECT coalesce(max(n), 0) FROM "+table.Sanitize()).Scan(&last))
	for _, r := range rows {
		r[0] = r[0].(int64) + last
	}
	_, err = conn.CopyFrom(ctx, table, []string{"n", "line"}, pgx.CopyFromRows(rows))
	ts.Check(err)
}

// bigline FILE BYTES writes one Binary resource whose data string makes the
// line BYTES long, with a newline.
func cmdBigLine(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: bigline FILE BYTES")
	}
	size, err := strconv.Atoi(args[1])
	ts.Check(err)
	head, tail := `{"resourceType":"Binary","id":"big","contentType":"text/plain","data":"`, "\"}\n"
	line := make([]byte, 0, size+1)
	line = append(line, head...)
	for len(line) < size-len(tail)+1 {
		line = append(line, "QUJD"...)
	}
	line = append(line[:size-len(tail)+1], tail...)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), line, 0o644))
}

// nosessions APP waits (up to 10 s) until no session of application_name
// APP is left in the script's database: a killed client's backend ends a
// moment after the client does.
func cmdNoSessions(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: nosessions APP")
	}
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	var n int
	for range 100 {
		ts.Check(conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`, args[0]).Scan(&n))
		if n == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%d sessions of %s are still there after 10s", n, args[0])
}

// notable NAME... asserts that no relation of any NAME exists.
func cmdNoTable(ts *testscript.TestScript, neg bool, args []string) {
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	for _, name := range args {
		var exists bool
		ts.Check(conn.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{name}.Sanitize()).Scan(&exists))
		if exists != neg {
			ts.Fatalf("table %s exists: %v", name, exists)
		}
	}
}

// waitsql QUERY runs QUERY every 20 ms until its first row's first column
// is true (up to 30 s): for waiting on a condition in the database, such as
// a load blocked on a lock.
func cmdWaitSQL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitsql QUERY")
	}
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		ts.Check(conn.QueryRow(context.Background(), args[0]).Scan(&ok))
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitsql: still false after 30s: %s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldLocks is the session of locktables, kept open until unlock or the
// end of the script.
type heldLocks struct {
	mu   sync.Mutex
	conn *pgx.Conn
}

func (h *heldLocks) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close(context.Background()) // closing ends the transaction
		h.conn = nil
	}
}

// locktables TABLE... locks the tables (ACCESS EXCLUSIVE) in a transaction
// that stays open until unlock: whoever touches them waits meanwhile.
func cmdLockTables(ts *testscript.TestScript, neg bool, args []string) {
	h := ts.Value("held").(*heldLocks)
	h.release()
	conn := scriptConn(ts)
	ctx := context.Background()
	_, err := conn.Exec(ctx, "BEGIN")
	ts.Check(err)
	for _, t := range args {
		_, err := conn.Exec(ctx, "LOCK TABLE "+pgx.Identifier{t}.Sanitize()+" IN ACCESS EXCLUSIVE MODE")
		ts.Check(err)
	}
	h.mu.Lock()
	h.conn = conn
	h.mu.Unlock()
}

// unlock ends the transaction of locktables.
func cmdUnlock(ts *testscript.TestScript, neg bool, args []string) {
	ts.Value("held").(*heldLocks).release()
}
