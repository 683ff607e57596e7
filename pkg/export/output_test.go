package export

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
)

// Split files are cut at line boundaries, none larger than the split size
// unless one line is, and together they hold every line once, in order.
func TestOutputSplitsAtLines(t *testing.T) {
	for _, split := range []int64{0, 1, 25, 100, 1000} {
		dir := filepath.Join(t.TempDir(), "out")
		folder, err := sink.OpenFolder(dir, sink.FolderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o := &output{folder: folder, file: bulkdata.Name{Type: "T", Split: split > 0}, splitSize: split, pending: 1}
		var all bytes.Buffer
		for i := range 200 {
			fmt.Fprintf(&all, "{\"id\":\"%d\",\"pad\":\"%s\"}\n", i, strings.Repeat("x", i%40))
		}
		data := all.Bytes()
		// Batches of odd sizes, cut at line ends.
		for len(data) > 0 {
			n := min(len(data), 97)
			n = bytes.IndexByte(data[n-1:], '\n') + n
			if err := o.write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		if err := o.taskDone(); err != nil {
			t.Fatal(err)
		}
		if err := folder.Commit(nil); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		var rows int64
		for _, f := range o.files {
			b, err := os.ReadFile(filepath.Join(dir, f.URL))
			if err != nil {
				t.Fatal(err)
			}
			if split > 0 && int64(len(b)) > split && bytes.Count(b, []byte{'\n'}) > 1 {
				t.Errorf("split %d: %s has %d bytes", split, f.URL, len(b))
			}
			if len(b) == 0 || b[len(b)-1] != '\n' || int64(bytes.Count(b, []byte{'\n'})) != *f.Count {
				t.Errorf("split %d: %s: %d bytes, count %d", split, f.URL, len(b), *f.Count)
			}
			rows += *f.Count
			got.Write(b)
		}
		if !bytes.Equal(got.Bytes(), all.Bytes()) || rows != 200 {
			t.Errorf("split %d: the files do not hold the lines once in order (%d rows)", split, rows)
		}
		if split == 0 && (len(o.files) != 1 || o.files[0].URL != "T.ndjson") {
			t.Errorf("no split: files %v", o.files)
		}
	}
}

func TestAfter(t *testing.T) {
	for in, want := range map[string]string{
		"2024-01-01T00:00:00Z":         "2024-01-01T00:00:00.000001Z",
		"2024-01-01T00:00:00.000001Z":  "2024-01-01T00:00:00.000002Z",
		"2024-01-01T00:00:00.0000015Z": "2024-01-01T00:00:00.000002Z", // ts .000002 is after it, .000001 is not
	} {
		at, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			t.Fatal(err)
		}
		if got := After(at).Format(time.RFC3339Nano); got != want {
			t.Errorf("After(%s) = %s, want %s", in, got, want)
		}
	}
}
