package export

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// ChainError is an export that cannot go on from the manifest it was given
// (--since-manifest): its changes would be measured against another
// database, another set of types, or a watermark in the future.
type ChainError struct {
	Kind string // "database", "types" or "watermark"
	Msg  string
}

func (e *ChainError) Error() string { return e.Msg }

// checkChain checks that an export of the types want (typeSet) on database
// id, at a snapshot taken at, can go on from the manifest extension from,
// whose watermark is since. A manifest written before fhirbulk recorded
// the database (and the types) is taken as it is.
func checkChain(from bulkdata.Ext, id pg.Identity, want []string, compartment string, since, at time.Time) error {
	if from.Compartment != compartment {
		return &ChainError{"compartment", fmt.Sprintf("it was made of %s, this export of %s: a resource not in it would miss its earlier changes", compartmentText(from.Compartment), compartmentText(compartment))}
	}
	if from.Database != nil {
		was := identityOf(*from.Database)
		if !was.Same(id) {
			return &ChainError{"database", fmt.Sprintf("it was made on %s, this is %s", was, id)}
		}
		if !slices.Equal(from.Types, want) {
			return &ChainError{"types", fmt.Sprintf("it was made of %s, this export of %s: a type not in it would miss its earlier changes", typesText(from.Types), typesText(want))}
		}
	}
	if since.After(at) {
		return &ChainError{"watermark", fmt.Sprintf("its watermark %s is later than this export's snapshot (%s by the server's clock): the clock went back, or the manifest is not this database's",
			bulkdata.FormatTime(since), bulkdata.FormatTime(at))}
	}
	return nil
}

func compartmentText(c string) string {
	if c == "" {
		return "the whole database"
	}
	return "the compartments of " + c
}

func typesText(types []string) string {
	if len(types) == 0 {
		return "every type"
	}
	return "the types " + strings.Join(types, ",")
}

// typeSet is the types asked for, sorted, each once; nil for every type.
func typeSet(types []string) []string {
	if len(types) == 0 {
		return nil
	}
	out := slices.Clone(types)
	slices.Sort(out)
	return slices.Compact(out)
}

func databaseOf(id pg.Identity) *bulkdata.Database {
	return &bulkdata.Database{SystemIdentifier: id.SystemID, Name: id.Database, OID: id.OID, Host: id.Host, Port: id.Port}
}

func identityOf(d bulkdata.Database) pg.Identity {
	return pg.Identity{SystemID: d.SystemIdentifier, Database: d.Name, OID: d.OID, Host: d.Host, Port: d.Port}
}
