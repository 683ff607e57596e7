package dumpsql

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestCheckQueryAccepts(t *testing.T) {
	for _, q := range []string{
		"SELECT 1",
		"select 1;",
		"SeLeCt*from patient",
		"  \t\n select 1",
		"-- a comment\nselect 1",
		"-- a comment\r\nWITH x AS (select 1) select * from x",
		"/* a /* nested */ comment */ select 1",
		"/**/select 1",
		"/* ** */ select 1",
		"/*/ still a comment */ select 1",
		"((select 1)) union (select 2)",
		"( /* c */ ( -- c\n VALUES (1)))",
		"TABLE patient",
		"table patient",
		"VALUES (1)",
		"values (1), (2)",
		"WITH x AS (select 1) select * from x",
		"with d as (delete from t returning *) select * from d", // refused by the READ ONLY transaction
		"select 1; select 2",                                    // refused by the extended protocol
	} {
		if err := CheckQuery(q); err != nil {
			t.Errorf("CheckQuery(%q): %v", q, err)
		}
	}
}

func TestCheckQueryRefuses(t *testing.T) {
	const msg = "query: dump-sql runs one SELECT, WITH, VALUES or TABLE query, not "
	for q, want := range map[string]string{
		"copy (select 1) to program 'touch /tmp/x'": "COPY",
		"COPY patient TO '/tmp/p'":                  "COPY",
		"LOCK patient IN ACCESS EXCLUSIVE MODE":     "LOCK",
		"set search_path = evil":                    "SET",
		"DO $$BEGIN PERFORM 1; END$$":               "DO",
		"call p()":                                  "CALL",
		"explain analyze delete from patient":       "EXPLAIN",
		"insert into patient values (1)":            "INSERT",
		"delete from patient":                       "DELETE",
		"begin":                                     "BEGIN",
		"show all":                                  "SHOW",
		"selection":                                 "SELECTION",
		"select1":                                   "SELECT1",
		"select_1":                                  "SELECT_1",
		"selectä 1":                                 "SELECTä",
		"ſelect 1":                                  "ſELECT",
		"-- select 1\ncopy (select 1) to program 'id'":      "COPY",
		"/* select /* nested */ select */ copy t to stdout": "COPY",
		"/* unclosed /* select */ select 1":                 "an empty one",
		"-- only a comment":                                 "an empty one",
		"  ( ":                                              "an empty one",
		`\copy t to 'x'`:                                    `a statement beginning with '\\'`,
		";select 1":                                         `a statement beginning with ';'`,
		`"select" 1`:                                        `a statement beginning with '"'`,
		"\u00a0select 1":                                    "\u00a0SELECT", // not whitespace to PostgreSQL
	} {
		err := CheckQuery(q)
		if !errors.Is(err, ErrNotAQuery) || err.Error() != msg+want {
			t.Errorf("CheckQuery(%q): %v, want %q", q, err, msg+want)
		}
	}
}

// A refused query never reaches the server: Run returns before it
// touches the connection (here none).
func TestRunRefusesBeforeTheServer(t *testing.T) {
	_, err := Run(context.Background(), nil, Options{Query: "copy (select 1) to program 'id'", Format: "csv"}, io.Discard)
	if !errors.Is(err, ErrNotAQuery) {
		t.Fatalf("Run: %v, want ErrNotAQuery", err)
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, c := range []struct {
		o     Options
		field string // "" no *OptionError
		ok    bool
	}{
		{Options{Query: "select 1"}, "", true},
		{Options{Query: "select 1", Format: "ndjson", Timeout: MaxTimeout}, "", true},
		{Options{Query: "select 1", Format: "xml"}, "format", false},
		{Options{Query: "select 1", Timeout: -1}, "timeout", false},
		{Options{Query: "select 1", Timeout: MaxTimeout + time.Millisecond}, "timeout", false},
		{Options{Query: " \n"}, "query", false},
		{Options{Query: "delete from x"}, "", false},
	} {
		err := c.o.Check()
		var oe *OptionError
		if (err == nil) != c.ok || (c.field != "") != errors.As(err, &oe) || (oe != nil && oe.Field != c.field) {
			t.Errorf("%+v: Check() = %v, want field %q ok %v", c.o, err, c.field, c.ok)
		}
	}
}
