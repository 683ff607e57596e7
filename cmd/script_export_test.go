package cmd

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
)

// exportCmds are the script commands for exports and the database work
// around them.
func exportCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"manifest": cmdManifest,
		"txbegin":  cmdTxBegin,
		"txcommit": cmdTxCommit,
		"sqlbg":    cmdSQLBackground,
		"sqlwait":  cmdSQLWait,
		"readrole": cmdReadRole,
	}
}

// manifest DIR checks DIR/manifest.json field by field (HL7 Bulk Data:
// transactionTime an instant, requiresAccessToken false, output, deleted
// and error arrays whose files exist with as many lines as their count,
// every line of an output file a resource of its type (of an error file,
// an OperationOutcome); fhirbulk's
// extension with format, snapshotTime and watermark; no other file in DIR)
// and prints one line per file, "output|deleted|error TYPE FILE COUNT", sorted,
// then "files N".
func cmdManifest(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: manifest DIR")
	}
	dir := ts.MkAbs(args[0])
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	ts.Check(err)
	var raw map[string]json.RawMessage
	ts.Check(json.Unmarshal(data, &raw))
	for _, k := range []string{"transactionTime", "request", "requiresAccessToken", "output", "deleted", "error", "extension"} {
		if _, ok := raw[k]; !ok {
			ts.Fatalf("manifest: no %q", k)
		}
	}
	var m bulkdata.Manifest
	ts.Check(json.Unmarshal(data, &m))
	if _, err := time.Parse(time.RFC3339Nano, m.TransactionTime); err != nil {
		ts.Fatalf("manifest: transactionTime %q", m.TransactionTime)
	}
	if m.RequiresAccessToken {
		ts.Fatalf("manifest: requiresAccessToken is true")
	}
	ext, ok := m.Ext()
	if !ok || (ext.Format != "aidbox" && ext.Format != "fhir") {
		ts.Fatalf("manifest: extension.fhirbulk %s", raw["extension"])
	}
	for _, v := range []string{ext.Snapshot, ext.Watermark} {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			ts.Fatalf("manifest: extension time %q", v)
		}
	}
	listed := map[string]bool{"manifest.json": true}
	var lines []string
	check := func(kind string, files []bulkdata.File) {
		for _, f := range files {
			if f.Count == nil || strings.Contains(f.URL, "/") {
				ts.Fatalf("manifest: %s entry %+v", kind, f)
			}
			listed[f.URL] = true
			n, types := countLines(ts, filepath.Join(dir, f.URL))
			if n != *f.Count {
				ts.Fatalf("manifest: %s has %d lines, count says %d", f.URL, n, *f.Count)
			}
			for t := range types {
				if t != f.Type {
					ts.Fatalf("manifest: %s (type %s) holds a %s", f.URL, f.Type, t)
				}
			}
			lines = append(lines, fmt.Sprintf("%s %s %s %d", kind, f.Type, f.URL, n))
		}
	}
	check("output", m.Output)
	check("deleted", m.Deleted)
	check("error", m.Error)
	entries, err := os.ReadDir(dir)
	ts.Check(err)
	for _, e := range entries {
		if !listed[e.Name()] {
			ts.Fatalf("manifest: %s is in the folder but not listed", e.Name())
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(ts.Stdout(), l)
	}
	fmt.Fprintf(ts.Stdout(), "files %d\n", len(lines))
}

// countLines counts the lines of an ndjson(.gz) file and the resource
// types they hold.
func countLines(ts *testscript.TestScript, path string) (int64, map[string]bool) {
	f, err := os.Open(path)
	ts.Check(err)
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		ts.Check(err)
		r = zr
	}
	br := bufio.NewReaderSize(r, 1<<20)
	types := map[string]bool{}
	var n int64
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				ts.Fatalf("%s: the last line has no newline", path)
			}
			var res struct {
				ResourceType string `json:"resourceType"`
			}
			if jerr := json.Unmarshal(line, &res); jerr != nil {
				ts.Fatalf("%s line %d: %v", path, n+1, jerr)
			}
			types[res.ResourceType] = true
			n++
		}
		if err == io.EOF {
			return n, types
		}
		ts.Check(err)
	}
}

// txbegin SQL... opens a transaction on a connection of its own, runs the
// statements in it and leaves it open (until txcommit, or the end of the
// script, which rolls it back).
func cmdTxBegin(ts *testscript.TestScript, neg bool, args []string) {
	h := ts.Value("held").(*heldLocks)
	h.release()
	conn := scriptConn(ts)
	ctx := context.Background()
	_, err := conn.Exec(ctx, "BEGIN")
	ts.Check(err)
	for _, s := range args {
		_, err := conn.Exec(ctx, s)
		ts.Check(err)
	}
	h.mu.Lock()
	h.conn = conn
	h.mu.Unlock()
}

// txcommit commits the transaction of txbegin (or locktables).
func cmdTxCommit(ts *testscript.TestScript, neg bool, args []string) {
	h := ts.Value("held").(*heldLocks)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		ts.Fatalf("txcommit: no transaction open")
	}
	_, err := h.conn.Exec(context.Background(), "COMMIT")
	ts.Check(err)
	h.conn.Close(context.Background())
	h.conn = nil
}

var background sync.Map // script work folder + name -> chan error

// sqlbg NAME SQL runs SQL on a connection of its own in the background
// (a CALL of a procedure that commits as it goes, say); sqlwait NAME waits
// for it and fails if it failed.
func cmdSQLBackground(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sqlbg NAME SQL")
	}
	conn := scriptConn(ts)
	done := make(chan error, 1)
	background.Store(ts.MkAbs(".")+"\x00"+args[0], done)
	go func() {
		_, err := conn.Exec(context.Background(), args[1])
		conn.Close(context.Background())
		done <- err
	}()
}

func cmdSQLWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sqlwait NAME")
	}
	v, ok := background.LoadAndDelete(ts.MkAbs(".") + "\x00" + args[0])
	if !ok {
		ts.Fatalf("sqlwait: no background statement %s", args[0])
	}
	select {
	case err := <-v.(chan error):
		ts.Check(err)
	case <-time.After(2 * time.Minute):
		ts.Fatalf("sqlwait %s: still running after 2 minutes", args[0])
	}
}

// readrole VAR creates a least-privilege role for the script's database:
// it may log in, connect to it and SELECT its tables (and nothing else: no
// pg_read_all_stats), and sets VAR to DATABASE_URL as that role. Roles are
// cluster-wide: the role is named after the script's database, and dropped
// (with what it was granted) when the script ends.
func cmdReadRole(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: readrole VAR")
	}
	role := ts.Getenv("TEST_DB_NAME") + "_reader"
	ident := pgx.Identifier{role}.Sanitize()
	conn := scriptConn(ts)
	defer conn.Close(context.Background())
	ctx := context.Background()
	for _, s := range []string{
		"CREATE ROLE " + ident + " LOGIN",
		"GRANT CONNECT ON DATABASE " + pgx.Identifier{ts.Getenv("TEST_DB_NAME")}.Sanitize() + " TO " + ident,
		"GRANT USAGE ON SCHEMA public TO " + ident,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + ident,
	} {
		_, err := conn.Exec(ctx, s)
		ts.Check(err)
	}
	dbURL := ts.Getenv("DATABASE_URL")
	ts.Defer(func() {
		c, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			ts.Logf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(ctx)
		for _, s := range []string{
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'",
			"DROP OWNED BY " + ident, "DROP ROLE " + ident,
		} {
			if _, err := c.Exec(ctx, s); err != nil {
				ts.Logf("drop role %s: %v", role, err)
				return
			}
		}
	})
	u, err := url.Parse(dbURL)
	ts.Check(err)
	u.User = url.User(role)
	ts.Setenv(args[0], u.String())
}
