package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/progress/progresstest"
)

// A database nobody answers on: a command that got as far as connecting
// fails with exit 1, not 2.
const noDB = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"

func runMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := map[string]string{"HOME": os.TempDir()}
	return Main(ctx, args, stdin, stdout, stderr, func(k string) string { return env[k] })
}

func TestRefuseCompressedTerminal(t *testing.T) {
	yes := func(io.Writer) bool { return true }
	no := func(io.Writer) bool { return false }
	for _, c := range []struct {
		o    outputFlags
		term func(io.Writer) bool
		want bool
	}{
		{outputFlags{gzip: true}, yes, true},
		{outputFlags{gzip: true, path: "-"}, yes, true},
		{outputFlags{gzip: true}, no, false},
		{outputFlags{gzip: true, path: "x.gz"}, yes, false},
		{outputFlags{path: "x.gz"}, yes, false},
		{outputFlags{}, yes, false},
	} {
		err := refuseCompressedTerminal(&c.o, io.Discard, c.term)
		if (err != nil) != c.want {
			t.Errorf("%+v, terminal %v: %v", c.o, c.term(nil), err)
		}
	}
}

// dump, dump-sql and convert refuse gzip to a terminal, as gzip does, with
// exit status 2, before they connect or read anything.
func TestCompressedToTerminalRefused(t *testing.T) {
	for _, args := range [][]string{
		{"dump", "--db", noDB, "--gzip", "Patient"},
		{"dump", "--db", noDB, "--gzip", "-o", "-", "Patient"},
		{"dump-sql", "--db", noDB, "--gzip", "SELECT 1"},
		{"convert", "--to", "fhir", "--gzip", "/nonexistent.ndjson"},
	} {
		term := progresstest.New(80, 24)
		var stderr bytes.Buffer
		code := runMain(context.Background(), args, strings.NewReader(""), term, &stderr)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want 2; stderr: %s", args, code, stderr.String())
		}
		if first, _, _ := strings.Cut(stderr.String(), "\n"); first != "fhirbulk: compressed data not written to a terminal (use -o FILE or a pipe)" {
			t.Errorf("%v: stderr %q", args, stderr.String())
		}
		if term.Written() != "" {
			t.Errorf("%v wrote on the terminal: %q", args, term.Written())
		}
	}
	// Not a terminal: it goes ahead (and here fails to connect, or converts).
	var out, stderr bytes.Buffer
	if code := runMain(context.Background(), []string{"dump", "--db", noDB, "--gzip", "Patient"}, nil, &out, &stderr); code != exitFailure {
		t.Errorf("to a pipe: exit %d: %s", code, stderr.String())
	}
	out.Reset()
	stderr.Reset()
	if code := runMain(context.Background(), []string{"convert", "--to", "fhir", "--gzip"}, strings.NewReader(`{"resourceType":"Basic","id":"b"}`+"\n"), &out, &stderr); code != 0 || !bytes.HasPrefix(out.Bytes(), []byte{0x1f, 0x8b}) {
		t.Errorf("convert to a pipe: exit %d, %q, %s", code, out.Bytes(), stderr.String())
	}
}

// No live line where the data goes to the same terminal, nor with -q, nor
// on a stderr that is not a terminal.
func TestShowProgress(t *testing.T) {
	term, other := progresstest.New(80, 24), progresstest.New(80, 24)
	var buf bytes.Buffer
	for _, c := range []struct {
		stdout, stderr io.Writer
		quiet          bool
		data, plain    bool // showProgress(true), showProgress(false)
	}{
		{term, term, false, false, true},
		{&buf, term, false, true, true},
		{other, term, false, true, true},
		{term, term, true, false, false},
		{term, &buf, false, false, false},
	} {
		a := &app{stdout: c.stdout, stderr: c.stderr, quiet: c.quiet}
		if got := a.showProgress(true); got != c.data {
			t.Errorf("%+v: showProgress(data on stdout) = %v", c, got)
		}
		if got := a.showProgress(false); got != c.plain {
			t.Errorf("%+v: showProgress = %v", c, got)
		}
	}
}

func TestSummaryLine(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{summaryLine("dump Patient", 13, "rows", 44_000, -1, "patients.ndjson", 200*time.Millisecond),
			"dump Patient: 13 rows, 44 kB to patients.ndjson in 0.2s"},
		{summaryLine("dump Patient", 13, "rows", 44_000, 9_100, "patients.ndjson.gz", 200*time.Millisecond),
			"dump Patient: 13 rows, 44 kB (9.1 kB gzipped) to patients.ndjson.gz in 0.2s"},
		{summaryLine("dump-sql", 1, "rows", 6, -1, "one.csv", 12*time.Millisecond),
			"dump-sql: 1 row, 6 B to one.csv in 12ms"},
		{summaryLine("convert a.ndjson", 1_011_108, "resources", 810_542_882, -1, "out/\x1b[2J.ndjson", 75*time.Second),
			`convert a.ndjson: 1,011,108 resources, 811 MB to out/\x1b[2J.ndjson in 1m15s`},
	} {
		if c.got != c.want {
			t.Errorf("got  %q\nwant %q", c.got, c.want)
		}
	}
}

// A state as an import at work has it: long URLs, one input storing, one
// reading with a known size.
func workingState(start time.Time) *bulkimport.State {
	url := "https://bucket.s3.amazonaws.com/exports/2026-11-29/synthea/%s.ndjson.gz?…"
	return &bulkimport.State{ID: "synthea", Status: bulkimport.StatusInProgress, PID: 4242,
		Time: bulkimport.StateTime{Start: start},
		Inputs: []bulkimport.InputState{
			{ResourceType: "Patient", URL: strings.Replace(url, "%s", "Patient", 1), Status: bulkimport.StatusFinished, Total: 13, Duration: 200},
			{ResourceType: "Observation", URL: strings.Replace(url, "%s", "Observation", 1), Status: bulkimport.StatusInProgress, Total: 0, BytesTotal: 810_000_000},
			{ResourceType: "Condition", URL: strings.Replace(url, "%s", "Condition", 1), Status: bulkimport.StatusInProgress, Total: 100_000, BytesRead: 40_000_000, BytesTotal: 40_000_000, Storing: true},
			{ResourceType: "Procedure", URL: strings.Replace(url, "%s", "Procedure", 1), Status: bulkimport.StatusPending},
			{ResourceType: "Claim", URL: "/data/Claim.ndjson", Status: bulkimport.StatusFailed, Error: "line 3: no string \"id\""},
		}}
}

func TestImportViewFits(t *testing.T) {
	start := time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)
	v := newImportView()
	now := start
	for i := 0; i <= 40; i++ { // 95 MB a second for 4 s, reported every 0.1 s
		st := workingState(start)
		st.Inputs[1].BytesRead, st.Inputs[1].Total = int64(i)*9_500_000, int64(i)*5000
		st.Inputs[2].Storing = i >= 10 // seen to begin storing at 1 s
		now = start.Add(time.Duration(i) * 100 * time.Millisecond)
		v.observe(st, now)
	}
	now = now.Add(3 * time.Second) // and the Condition input has been storing for 6 s
	lines := v.lines(79, 23, now)
	for _, l := range lines {
		if progress.Width(l) > 79 {
			t.Errorf("%d cells: %q", progress.Width(l), l)
		}
	}
	joined := strings.Join(lines, "\n")
	for _, s := range []string{"import synthea  in-progress  1/5 inputs", "13 resources in 0.2s", "46%", "ETA ", "storing… 6s", "Procedure", `line 3: no string "id"`} {
		if !strings.Contains(joined, s) {
			t.Errorf("the view lacks %q:\n%s", s, joined)
		}
	}
	for _, w := range []int{119, 59, 39, 20} {
		for _, l := range v.lines(w, 23, now) {
			if progress.Width(l) > w {
				t.Errorf("at %d: %d cells: %q", w, progress.Width(l), l)
			}
		}
	}
	// Few rows: the inputs at work and the failed ones first, and what is
	// left out said.
	lines = v.lines(79, 4, now)
	if len(lines) != 4 || !strings.Contains(lines[1], "Observation") || !strings.Contains(lines[2], "Condition") ||
		lines[3] != "  … 3 more: 1 failed, 1 finished, 1 pending" {
		t.Errorf("4 rows:\n%s", strings.Join(lines, "\n"))
	}
}

// status exits with how the import stands: 1 failed, 3 interrupted.
func TestStatusExitCodes(t *testing.T) {
	dir := t.TempDir()
	store := bulkimport.Store{Dir: dir}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, st := range []*bulkimport.State{
		{ID: "fin", Status: bulkimport.StatusFinished, Time: bulkimport.StateTime{Start: start, End: &start}},
		{ID: "bad", Status: bulkimport.StatusFailed, Time: bulkimport.StateTime{Start: start, End: &start},
			Inputs: []bulkimport.InputState{{ResourceType: "Basic", URL: "b", Status: bulkimport.StatusFailed, Error: "boom"}}},
		{ID: "gone", Status: bulkimport.StatusInProgress, PID: 999999, Time: bulkimport.StateTime{Start: start}},
	} {
		if err := store.Write(st); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"status", "fin"}, 0},
		{[]string{"status", "bad"}, 1},
		{[]string{"status", "bad", "--json"}, 1},
		{[]string{"status", "bad", "--watch"}, 1},
		{[]string{"status", "gone"}, 3},
		{[]string{"status", "gone", "--json"}, 3},
		{[]string{"status", "gone", "--watch"}, 3},
		{[]string{"status", "--json"}, 0},
		{[]string{"status"}, 0},
	} {
		var out, errOut bytes.Buffer
		a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		root := a.rootCmd()
		root.SetArgs(append(c.args, "--state-dir", dir))
		_, err := root.ExecuteContextC(context.Background())
		var ee *exitError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("%v: %v", c.args, err)
		}
		code, _ := exitStatus(err, ending{ran: true})
		if code != c.code {
			t.Errorf("%v: exit status %d, want %d (%v)", c.args, code, c.code, err)
		}
	}

	// As Main does it.
	var out, errOut bytes.Buffer
	if code := runMain(context.Background(), []string{"status", "bad", "--state-dir", dir}, nil, &out, &errOut); code != 1 {
		t.Errorf("Main: status bad: exit %d", code)
	}
	if got := errOut.String(); got != "fhirbulk: import bad failed: 1 of 1 inputs failed\n" {
		t.Errorf("status bad: stderr %q", got)
	}
	out.Reset()
	runMain(context.Background(), []string{"status", "--json", "--state-dir", dir}, nil, &out, &errOut)
	var all []bulkimport.State
	if err := json.Unmarshal(out.Bytes(), &all); err != nil || len(all) != 3 {
		t.Errorf("status --json: %v, %d states:\n%s", err, len(all), out.String())
	}
}

// holdLock runs a process that holds the lock of import id in dir (as the
// process running it does) until release.
func holdLock(t *testing.T, dir, id string) (release func()) {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	c.Env = append(os.Environ(), "FHIRBULK_HOLD_LOCK="+filepath.Join(dir, id))
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "locked") {
		t.Fatalf("the lock helper said %q", line)
	}
	return func() {
		in.Close()
		c.Wait()
	}
}

// TestHoldLockHelper is the process of holdLock.
func TestHoldLockHelper(t *testing.T) {
	p := os.Getenv("FHIRBULK_HOLD_LOCK")
	if p == "" {
		t.Skip("a helper process of holdLock")
	}
	l, err := bulkimport.Store{Dir: filepath.Dir(p)}.Lock(filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	io.Copy(io.Discard, os.Stdin)
	l.Release()
}

// status --watch on a terminal 80 columns wide, with URLs wider than that:
// it redraws in place, leaves nothing of its view behind, and ends with the
// import's description, as status prints it.
func TestStatusWatchOnATerminal(t *testing.T) {
	dir := t.TempDir()
	store := bulkimport.Store{Dir: dir}
	start := time.Now().UTC()
	st := workingState(start)
	st.ID = "w"
	if err := store.Write(st); err != nil {
		t.Fatal(err)
	}
	release := holdLock(t, dir, "w")
	defer release()

	term := progresstest.New(80, 24)
	io.WriteString(term, "$ fhirbulk status w --watch\n")
	var stderr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- runMain(context.Background(), []string{"status", "w", "--watch", "--state-dir", dir}, nil, term, &stderr)
	}()
	// Each new state is followed by two redraws: the second began after the
	// write, so it read the new state (a condition, not a sleep).
	redraws := func() int { return strings.Count(term.Written(), "\r\x1b[5A") }
	for i := 1; i <= 6; i++ {
		st.Inputs[1].BytesRead, st.Inputs[1].Total = int64(i)*50_000_000, int64(i)*60_000
		store.Write(st)
		n := redraws()
		waitUntil(t, "a redraw after the state changed", func() bool { return redraws() >= n+2 })
	}
	end := time.Now().UTC()
	st.Status, st.Time.End = bulkimport.StatusFinished, &end
	for i := range st.Inputs {
		st.Inputs[i].Status, st.Inputs[i].Storing = bulkimport.StatusFinished, false
	}
	store.Write(st)
	release()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("status --watch did not end")
	}
	final, _ := store.Read("w")
	want := progresstest.New(80, 24)
	io.WriteString(want, "$ fhirbulk status w --watch\n"+describe(final))
	if got := term.Text(); got != want.Text() {
		t.Errorf("the screen shows:\n%s\nwant:\n%s", got, want.Text())
	}
}

// Ctrl-C stops watching, not the import: it says so, exit 130.
func TestStatusWatchInterrupted(t *testing.T) {
	dir := t.TempDir()
	store := bulkimport.Store{Dir: dir}
	st := workingState(time.Now().UTC())
	st.ID = "w"
	if err := store.Write(st); err != nil {
		t.Fatal(err)
	}
	release := holdLock(t, dir, "w")
	defer release()

	term := progresstest.New(80, 24)
	io.WriteString(term, "$ fhirbulk status w --watch\n")
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // Ctrl-C once the view is on the screen
		deadline := time.Now().Add(waitLimit)
		for !strings.Contains(term.Written(), "\r\x1b[") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	code := runMain(ctx, []string{"status", "w", "--watch", "--state-dir", dir}, nil, term, &stderr)
	if code != exitInterrupted {
		t.Errorf("exit %d", code)
	}
	if !strings.HasPrefix(stderr.String(), "stopped watching: import w goes on (pid 4242)\n") {
		t.Errorf("stderr: %q", stderr.String())
	}
	// The description as it was, once; nothing of the view.
	if got := term.Text(); strings.Count(got, "import w") != 1 || !strings.Contains(got, "import w: in-progress, 1/5 inputs") {
		t.Errorf("the screen shows:\n%s", got)
	}

	// An import that ended meanwhile (interrupted: its process is gone):
	// the watch sees the end, says nothing more, and exits as status does.
	release()
	stderr.Reset()
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	code = runMain(ctx, []string{"status", "w", "--watch", "--state-dir", dir}, nil, io.Discard, &stderr)
	if code != 3 {
		t.Errorf("ended: exit %d", code)
	}
	if strings.Contains(stderr.String(), "stopped watching") {
		t.Errorf("ended: %q", stderr.String())
	}
}

// waitUntil polls cond until it holds, failing the test after waitLimit.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A pull waiting for its server shows the server's progress, fitted to the
// width, not inputs it does not have yet.
func TestImportViewPull(t *testing.T) {
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	st := &bulkimport.State{ID: "import-1", Status: bulkimport.StatusInProgress, Time: bulkimport.StateTime{Start: start},
		Pull: &bulkimport.PullState{KickOff: "https://ehr.example.org/fhir/Group/g1/$export", Phase: bulkimport.PhaseExport,
			Progress: "Observation: 412,000 of about 1,000,000 rows", Polls: 12}}
	v := newImportView()
	v.observe(st, start)
	lines := v.lines(80, 10, start.Add(65*time.Second))
	want := []string{
		"import import-1  in-progress  1m05s elapsed",
		"  the server exports: Observation: 412,000 of about 1,000,000 rows (12 polls)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range v.lines(40, 10, start) {
		if progress.Width(l) > 40 {
			t.Errorf("%q is wider than 40", l)
		}
	}
	st.Pull.Phase = bulkimport.PhaseKickOff
	v.observe(st, start)
	if l := v.lines(80, 10, start); len(l) != 2 || l[1] != "  kicking off the export at https://ehr.example.org/fhir/Group/g1/$export" {
		t.Errorf("%q", l)
	}
}
