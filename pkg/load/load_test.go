package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// testDatabase makes an empty database on the server of
// FHIRBULK_TEST_DATABASE_URL (the test is skipped without one), dropped
// when the test ends, and returns its URL.
func testDatabase(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("FHIRBULK_TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("FHIRBULK_TEST_DATABASE_URL unset")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var r [4]byte
	rand.Read(r[:])
	name := "fhirbulk_load_test_" + hex.EncodeToString(r[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Error("drop test database:", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error("drop test database:", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// testLoader is a Loader on a new connection to dsn.
func testLoader(t *testing.T, dsn string) *Loader {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	layout := &store.Layout{DSN: dsn}
	t.Cleanup(func() {
		layout.Close()
		conn.Close(context.Background())
	})
	return &Loader{Conn: conn, Layout: layout}
}

// writeSource writes lines as an ndjson file and returns its path.
func writeSource(t *testing.T, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A source with more ids than the Loader keeps hashes of cannot be known to
// have unique ids: each type takes the path that allows repeated ids, and
// the load is the same as one under the bound.
func TestLoadPastMaxIDHashes(t *testing.T) {
	dsn := testDatabase(t)
	ctx := context.Background()
	l := testLoader(t, dsn)
	l.maxIDHashes = 4

	// Into empty tables, all ids new.
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","v":"a%d"}`, i, i))
	}
	lines = append(lines, `{"resourceType":"Group","id":"g1"}`)
	res, err := l.LoadSource(ctx, writeSource(t, "first.ndjson", lines...), source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.spare.ids.overflow {
		t.Fatal("11 ids did not overflow a bound of 4")
	}
	if got := res.Counts.JSON(); got != `{"Group":1,"Patient":10}` {
		t.Errorf("counts %s", got)
	}

	// Ids that exist, and one given twice: the last line wins.
	res, err = l.LoadSource(ctx, writeSource(t, "second.ndjson",
		`{"resourceType":"Patient","id":"p1","v":"b1"}`,
		`{"resourceType":"Patient","id":"p10","v":"b10"}`,
		`{"resourceType":"Patient","id":"p2","v":"b2"}`,
		`{"resourceType":"Patient","id":"p1","v":"c1"}`,
		`{"resourceType":"Patient","id":"p3","v":"b3"}`,
	), source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.spare.ids.overflow {
		t.Fatal("5 ids did not overflow a bound of 4")
	}
	if got := res.Counts.JSON(); got != `{"Patient":5}` {
		t.Errorf("counts %s", got)
	}

	rows, err := l.Conn.Query(ctx, `SELECT id, status::text, resource->>'v' FROM patient ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, status, v string
		if err := rows.Scan(&id, &status, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+" "+status+" "+v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"p0 created a0", "p1 updated c1", "p10 created b10", "p2 updated b2", "p3 updated b3",
		"p4 created a4", "p5 created a5", "p6 created a6", "p7 created a7", "p8 created a8", "p9 created a9",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("patient:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var groups int
	if err := l.Conn.QueryRow(ctx, `SELECT count(*) FROM "group"`).Scan(&groups); err != nil || groups != 1 {
		t.Errorf("%d groups (%v)", groups, err)
	}
}

func TestCountsJSON(t *testing.T) {
	c := Counts{"Observation": 20382, "CarePlan": 356}
	c.Add(Counts{"CarePlan": 1})
	if got := c.JSON(); got != `{"CarePlan":357,"Observation":20382}` {
		t.Errorf("JSON() = %s", got)
	}
	if c.Total() != 20739 {
		t.Errorf("Total() = %d", c.Total())
	}
	if got := (Counts{}).JSON(); got != "{}" {
		t.Errorf("empty JSON() = %s", got)
	}
}

func TestResultSummary(t *testing.T) {
	r := Result{Counts: Counts{"Patient": 2, "CarePlan": 1}, Skipped: []BadLine{{Type: "Patient"}, {}}}
	for _, c := range []struct {
		single, skipped bool
		want            string
	}{
		{false, false, `{"CarePlan":1,"Patient":2}`},
		{true, false, `{"total":3}`},
		{false, true, `{"CarePlan":1,"Patient":2,"skipped":{"Patient":1,"unknown":1}}`},
		{true, true, `{"total":3,"skipped":2}`},
	} {
		if got := r.Summary(c.single, c.skipped); got != c.want {
			t.Errorf("Summary(%v, %v) = %s, want %s", c.single, c.skipped, got, c.want)
		}
	}
	if got := (Result{}).Summary(false, true); got != `{"skipped":{}}` {
		t.Errorf("empty Summary = %s", got)
	}
}
