package load

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

const stageTable = "fhirbulk_stage"

// stage is the session's staging table: fhirbulk_stage, partitioned by
// resource type, its rows deleted at every commit.
type stage struct {
	conn       *pgx.Conn         // the connection it lives on (nil: not made yet)
	partitions map[string]string // committed partitions by type
	fresh      map[string]string // partitions made in the running transaction
	made       int               // partitions made so far, for their names
	dirty      bool              // a transaction that staged rows rolled back
}

// prepareStage makes the staging table on this connection when it is not
// there yet (outside any transaction, so it outlives a failed load), and
// empties it after a load that rolled back.
func (l *Loader) prepareStage(ctx context.Context) error {
	s := &l.stage
	if s.conn != l.Conn {
		*s = stage{conn: l.Conn, partitions: map[string]string{}}
		_, err := l.Conn.Exec(ctx, `CREATE TEMP TABLE `+stageTable+` (
			rtype text NOT NULL, n bigint NOT NULL, id text NOT NULL, cts timestamptz,
			txid bigint, ts timestamptz, resource text NOT NULL
		) PARTITION BY LIST (rtype) ON COMMIT DELETE ROWS`)
		if err != nil {
			s.conn = nil
			return err
		}
		return nil
	}
	if s.dirty {
		if _, err := l.Conn.Exec(ctx, `TRUNCATE `+stageTable); err != nil {
			return err
		}
		s.dirty = false
	}
	return nil
}

func (s *stage) addPartition(ctx context.Context, tx pgx.Tx, t string) error {
	s.made++
	p := pgx.Identifier{fmt.Sprintf("%s_%d", stageTable, s.made)}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+p+` PARTITION OF `+stageTable+` FOR VALUES IN (`+quoteLiteral(t)+`) ON COMMIT DELETE ROWS`); err != nil {
		return err
	}
	if s.fresh == nil {
		s.fresh = map[string]string{}
	}
	s.fresh[t] = p
	return nil
}

func (s *stage) partition(t string) string {
	if p, ok := s.fresh[t]; ok {
		return p
	}
	return s.partitions[t]
}

// committed keeps the partitions the transaction made.
func (s *stage) committed() {
	for t, p := range s.fresh {
		s.partitions[t] = p
	}
	s.fresh = nil
	s.dirty = false
}

// rolledBack forgets the partitions the transaction made: they are gone.
func (s *stage) rolledBack() {
	s.fresh = nil
}

// quoteLiteral quotes a resource type name (already validated to
// [A-Za-z0-9]) as an SQL string literal; DDL takes no parameters.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// copyToStage streams the source's rows into the staging table: a COPY
// runs until a line of a type that has no partition yet; the partition is
// made, and the next COPY starts with that line. Its errors are as the user
// is told them.
func (l *Loader) copyToStage(ctx context.Context, tx pgx.Tx, enc *encoder) error {
	addType := func(t string) error {
		if err := l.stage.addPartition(ctx, tx, t); err != nil {
			return l.dbError(ctx, err, enc)
		}
		enc.admit(t)
		return nil
	}
	for t := range l.stage.partitions {
		enc.known[t] = true
	}
	if l.Opts.Type != "" && !enc.known[l.Opts.Type] {
		if err := addType(l.Opts.Type); err != nil {
			return err
		}
	}
	l.stage.dirty = true // until it commits: rows of a rolled-back COPY stay on disk
	for {
		_, err := tx.Conn().PgConn().CopyFrom(ctx, enc, `COPY `+stageTable+` FROM STDIN (FORMAT binary)`)
		if enc.err != nil {
			return enc.err // ours (bad line, read error) rather than the server's "COPY failed"
		}
		if err != nil {
			return l.dbError(ctx, err, enc)
		}
		if enc.newType == "" {
			return nil
		}
		if err := addType(enc.newType); err != nil {
			return err
		}
	}
}
