package pg

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Identity says which database a connection is on, in a form that can be
// stored (in a manifest, in an import's state) and compared later: the
// cluster's system identifier (pg_control_system(), the same for the
// cluster's whole life and different for every initdb, even on one host
// and port) and the database's OID and name (a database dropped and
// created again under its name gets a new OID). Host and Port say where
// it was reached, for messages only: one server has many names.
type Identity struct {
	SystemID string `json:"systemIdentifier,omitempty"` // "" when the role may not read it
	Database string `json:"database"`
	OID      uint32 `json:"databaseOid"`
	Host     string `json:"host,omitempty"`
	Port     int    `json:"port,omitempty"`
}

// ReadIdentity reads the identity of the database conn is on. The system
// identifier needs EXECUTE on pg_control_system(), which PostgreSQL grants
// to PUBLIC; a server that revoked it still gives an Identity, without it
// (Key then falls back to host and port). It never holds a password.
func ReadIdentity(ctx context.Context, conn *pgx.Conn) (Identity, error) {
	cfg := conn.Config()
	id := Identity{Host: cfg.Host, Port: int(cfg.Port)}
	err := conn.QueryRow(ctx, `SELECT current_database(), d.oid::int8 FROM pg_database d WHERE d.datname = current_database()`).Scan(&id.Database, &id.OID)
	if err != nil {
		return id, fmt.Errorf("read the database's identity: %w", Wrap(err))
	}
	var sys int64
	// In its own statement: a refusal must not spoil the rest.
	if err := conn.QueryRow(ctx, `SELECT system_identifier FROM pg_control_system()`).Scan(&sys); err == nil {
		id.SystemID = strconv.FormatUint(uint64(sys), 10)
	}
	return id, nil
}

// Key is what two identities are compared by: the system identifier and
// the database OID, or, without a system identifier, where the database
// was reached and its name.
func (id Identity) Key() string {
	if id.SystemID != "" {
		return id.SystemID + "/" + strconv.FormatUint(uint64(id.OID), 10)
	}
	return id.Host + ":" + strconv.Itoa(id.Port) + "/" + id.Database
}

// Same reports whether id and other are the same database. When only one
// of them has a system identifier (a server that revoked
// pg_control_system() since), the database's name, OID, host and port
// decide.
func (id Identity) Same(other Identity) bool {
	if id.SystemID != "" && other.SystemID != "" {
		return id.SystemID == other.SystemID && id.OID == other.OID
	}
	return id.Database == other.Database && id.OID == other.OID && id.Host == other.Host && id.Port == other.Port
}

// String names the database for a message: database "d" (OID 16384) of
// cluster 7714750139950438522 at host:port.
func (id Identity) String() string {
	s := fmt.Sprintf("database %q (OID %d)", id.Database, id.OID)
	if id.SystemID != "" {
		s += " of cluster " + id.SystemID
	}
	if id.Host != "" {
		s += fmt.Sprintf(" at %s:%d", id.Host, id.Port)
	}
	return s
}
