package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/progress/progresstest"
)

// testDatabase is a fresh database of the test's own, dropped at its end;
// the test is skipped when there is no server (scripts/test.sh has one).
func testDatabase(t *testing.T) string {
	t.Helper()
	admin, cfg := testServer(t)
	_, u, err := createDatabase(admin, cfg, "", t.Cleanup, t.Log)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// An export on a terminal: its live line shows while it waits (here for a
// table another session holds locked) and is gone when it ends, the summary
// on a line of its own and nothing redrawn after it (once the summary was
// glued to the line, and the count said "1 files").
func TestExportOnATerminal(t *testing.T) {
	db := testDatabase(t)
	var out, errs bytes.Buffer
	if code := runMain(context.Background(), []string{"load", "--db", db, "--fhir", "--type", "Patient", "../testdata/sample/Patient.ndjson"}, nil, &out, &errs); code != 0 {
		t.Fatalf("load: exit %d: %s", code, errs.String())
	}
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE patient IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	term := progresstest.New(80, 24)
	t.Chdir(t.TempDir())
	dir := "out"
	var stdout bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"export", "--db", db, dir}, nil, &stdout, term)
	}()
	waitUntil(t, "the live line while the export waits for the lock", func() bool {
		return strings.Contains(term.Text(), "elapsed")
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("export: exit %d: %s", code, term.Text())
		}
	case <-time.After(waitLimit):
		t.Fatal("the export did not end")
	}
	check := func(when string) {
		t.Helper()
		screen := strings.TrimRight(term.Text(), "\n")
		lines := strings.Split(screen, "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "export: ") || !strings.Contains(lines[0], " in 1 file, ") {
			t.Errorf("%s, the screen shows:\n%s", when, screen)
		}
	}
	check("when it ended")
	drawn := term.Written()
	time.Sleep(3 * progress.Tick) // asserting that nothing comes: no condition to wait on
	check("ticks later")
	if term.Written() != drawn {
		t.Errorf("written after the end: %q", strings.TrimPrefix(term.Written(), drawn))
	}
}
