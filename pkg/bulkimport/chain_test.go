package bulkimport

import (
	"errors"
	"strings"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// The order rule of a chain of exports, one import after another into one
// database: what is refused, and what each refusal names.
func TestOrderCheck(t *testing.T) {
	store := Store{Dir: t.TempDir()}
	src := &bulkdata.Database{SystemIdentifier: "7", Name: "src", OID: 5}
	target := pg.Identity{SystemID: "7", Database: "dst", OID: 9}
	export := func(path, since, watermark, follows string) *Order {
		ext := bulkdata.Ext{Since: since, Watermark: watermark, Database: src, Follows: follows}
		return &Order{store: store, m: &Manifest{Path: path, Export: &ext}, ext: ext, target: target}
	}
	const (
		t0 = "2026-12-01T00:00:00.000000Z"
		t1 = "2026-12-02T00:00:00.000000Z"
		t2 = "2026-12-03T00:00:00.000000Z"
		t3 = "2026-12-04T00:00:00.000000Z"
	)
	full := export("/x/full/manifest.json", "", t0, "")
	inc1 := export("/x/inc1/manifest.json", t0, t1, "/x/full/manifest.json")
	inc2 := export("/x/inc2/manifest.json", t1, t2, "/x/inc1/manifest.json")
	wide := export("/x/wide/manifest.json", t0, t3, "/x/full/manifest.json") // since full, made later
	anon := export("/x/anon.json", t1, t2, "")                               // --since, no manifest followed

	steps := []struct {
		o      *Order
		refuse string // "" when let through (and then recorded)
	}{
		{inc1, "nothing of its chain was imported into this database: import first /x/full, the export it follows"},
		{anon, "import first the export it follows (whose watermark is " + t1 + ")"},
		{full, ""},
		{inc2, "goes on from watermark " + t1 + ", but the last export of its chain imported into this database, /x/full, ends at " + t0 + ": an export in between is missing; import first /x/inc1,"},
		{inc1, ""},
		{inc1, ""}, // the last one again
		{full, ""}, // a full one: always
		{inc1, ""},
		{inc2, ""},
		{inc1, "/x/inc1 (watermark " + t1 + ") is older than /x/inc2 (watermark " + t2 + "), imported into this database already"},
		{wide, ""}, // overlaps inc1 and inc2, and goes further: no gap, nothing reverted
		{inc2, "is older than /x/wide"},
	}
	for i, s := range steps {
		err := s.o.check()
		var oe *OrderError
		switch {
		case s.refuse == "" && err != nil:
			t.Fatalf("step %d (%s): %v", i, s.o.m.Path, err)
		case s.refuse != "" && (!errors.As(err, &oe) || !strings.Contains(err.Error(), s.refuse)):
			t.Fatalf("step %d (%s): %v; want an *OrderError with %q", i, s.o.m.Path, err, s.refuse)
		case s.refuse == "":
			if err := s.o.Record("id"); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Through CheckOrder, and --no-order-check.
	if _, err := CheckOrder(store, inc1.m, target, true); err == nil {
		t.Error("CheckOrder let inc1 through after inc2")
	}
	if o, err := CheckOrder(store, inc1.m, target, false); o == nil || err != nil {
		t.Errorf("CheckOrder without the check: %v, %v", o, err)
	}

	// Another target, another chain (other types), an export of another
	// database: each on its own.
	other := *inc2
	other.target = pg.Identity{SystemID: "7", Database: "other", OID: 10}
	if err := other.check(); err == nil || !strings.Contains(err.Error(), "nothing of its chain") {
		t.Errorf("another target: %v", err)
	}
	typed := export("/x/p/manifest.json", t0, t1, "")
	typed.ext.Types = []string{"Patient"}
	if err := typed.check(); err == nil || !strings.Contains(err.Error(), "nothing of its chain") {
		t.Errorf("another set of types: %v", err)
	}
	// A manifest without fhirbulk's extension, or without the database:
	// not checked.
	if o, err := CheckOrder(store, &Manifest{}, target, true); o != nil || err != nil {
		t.Errorf("no extension: %v, %v", o, err)
	}
	if o, err := CheckOrder(store, &Manifest{Export: &bulkdata.Ext{Since: t0, Watermark: t1}}, target, true); o != nil || err != nil {
		t.Errorf("no database: %v, %v", o, err)
	}
	// A nil Order records nothing.
	if err := (*Order)(nil).Record("x"); err != nil {
		t.Error(err)
	}
}
