package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
)

// TypeInfo is a type's table as the catalogs see it.
type TypeInfo struct {
	Type     string // the type's name, as its resources spell it
	Blocks   int64  // heap blocks (what a ctid range divides)
	Estimate int64  // the planner's row count, -1 when never analyzed
	Bytes    int64  // on disk, TOAST and indexes included
	Count    int64  // rows, set by Inventory (counted, or the Estimate)
}

// ListTypes lists the types: the tables of the current schema in the
// Aidbox layout (the columns, and the primary key on id alone: a _history
// table is not a type), sorted by type name. Read in a transaction at a
// snapshot, it lists them as of the snapshot.
//
// A partition (relispartition) or a child of classic inheritance is not a
// type of its own: its rows are its parent's, and a read of the parent
// (without ONLY) returns them, once. The parent's Blocks is the largest of
// its tree's tables (a ctid range applies to each of them, so ranges over
// the largest cover them all), its Estimate and Bytes their sums.
func ListTypes(ctx context.Context, tx pgx.Tx) ([]TypeInfo, error) {
	return ListTypesWith(ctx, tx, nil, nil)
}

// ListTypesWith is ListTypes for the tables keep keeps (nil: all), with a
// call to prepare (when not nil) with their table names after the catalog
// is read and before any of them is touched: pg_relation_size and a read
// of a table take its lock, and an export must take its own first (see
// export). The catalog read takes no table lock.
func ListTypesWith(ctx context.Context, tx pgx.Tx, keep func(table string) bool, prepare func(tables []string) error) ([]TypeInfo, error) {
	rows, err := tx.Query(ctx, `SELECT c.oid::int8, c.relname::text
		FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
		AND NOT c.relispartition AND NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid)
		AND c.relname ~ '^[a-z][a-z0-9]*$' AND length(c.relname) <= $1
		AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			AND (a.attname::text, format_type(a.atttypid, a.atttypmod)) IN (
				('id', 'text'), ('txid', 'bigint'), ('ts', 'timestamp with time zone'),
				('cts', 'timestamp with time zone'), ('resource_type', 'text'),
				('status', 'resource_status'), ('resource', 'jsonb'))) = 7
		AND EXISTS (SELECT FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
			WHERE x.indrelid = c.oid AND x.indisprimary AND x.indnkeyatts = 1 AND a.attname = 'id')
		ORDER BY c.relname`, MaxTypeLen)
	if err != nil {
		return nil, fmt.Errorf("list the types: %w", pg.Wrap(err))
	}
	type table struct {
		oid  int64
		name string
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var v table
		return v, r.Scan(&v.oid, &v.name)
	})
	if err != nil {
		return nil, fmt.Errorf("list the types: %w", pg.Wrap(err))
	}
	var oids []int64
	var names []string
	for _, t := range all {
		if keep == nil || keep(t.name) {
			oids = append(oids, t.oid)
			names = append(names, t.name)
		}
	}
	if len(oids) == 0 {
		return []TypeInfo{}, nil
	}
	if prepare != nil {
		if err := prepare(names); err != nil {
			return nil, err
		}
	}
	rows, err = tx.Query(ctx, `WITH RECURSIVE tree(root, rel) AS (
			SELECT o::oid, o::oid FROM unnest($1::int8[]) o
			UNION ALL SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel)
		SELECT r.relname::text, max(pg_relation_size(t.rel)) / current_setting('block_size')::bigint,
			CASE WHEN bool_and(c.reltuples < 0 OR c.relkind = 'p') THEN -1
				ELSE sum(CASE WHEN c.relkind = 'p' THEN 0 ELSE greatest(c.reltuples, 0) END) END::bigint,
			sum(pg_total_relation_size(t.rel))::bigint
		FROM tree t JOIN pg_class c ON c.oid = t.rel JOIN pg_class r ON r.oid = t.root
		GROUP BY r.relname ORDER BY r.relname`, oids)
	if err != nil {
		return nil, fmt.Errorf("list the types: %w", pg.Wrap(err))
	}
	type row struct {
		table                   string
		blocks, estimate, bytes int64
	}
	collected, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var v row
		return v, r.Scan(&v.table, &v.blocks, &v.estimate, &v.bytes)
	})
	if err != nil {
		return nil, fmt.Errorf("list the types: %w", pg.Wrap(err))
	}
	types := make([]TypeInfo, 0, len(collected))
	for _, r := range collected {
		name, err := typeOfTable(ctx, tx, r.table)
		if err != nil {
			return nil, err
		}
		types = append(types, TypeInfo{Type: name, Blocks: r.blocks, Estimate: max(r.estimate, -1), Bytes: r.bytes})
	}
	slices.SortFunc(types, func(a, b TypeInfo) int { return strings.Compare(a.Type, b.Type) })
	return types, nil
}

// typeOfTable is the type name of a resource table: R4's spelling, else
// how its resources spell it, else (an empty table of a type R4 does not
// know) its name with a capital.
func typeOfTable(ctx context.Context, tx pgx.Tx, table string) (string, error) {
	if name, ok := r4types.Spelling(table); ok {
		return name, nil
	}
	var stored *string
	err := tx.QueryRow(ctx, `SELECT resource_type FROM `+pgx.Identifier{table}.Sanitize()+` WHERE resource_type IS NOT NULL LIMIT 1`).Scan(&stored)
	if err != nil && err != pgx.ErrNoRows {
		return "", fmt.Errorf("table %s: %w", pgx.Identifier{table}.Sanitize(), pg.Wrap(err))
	}
	if stored != nil && strings.EqualFold(*stored, table) && ValidateType(*stored) == nil {
		return *stored, nil
	}
	return strings.ToUpper(table[:1]) + table[1:], nil
}

// Inventory lists the types as ListTypes does, with their number of rows
// in Count: counted (count(*) in tx, at its snapshot) when count is true,
// else the planner's Estimate, which costs nothing on a huge database.
func Inventory(ctx context.Context, tx pgx.Tx, count bool) ([]TypeInfo, error) {
	types, err := ListTypes(ctx, tx)
	if err != nil {
		return nil, err
	}
	for i := range types {
		t := &types[i]
		t.Count = t.Estimate
		if count {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+Table(t.Type)).Scan(&t.Count); err != nil {
				return nil, fmt.Errorf("count %s: %w", t.Type, pg.Wrap(err))
			}
		}
	}
	return types, nil
}
