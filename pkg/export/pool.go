package export

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// task is one piece of work on one type: a range of its table's heap
// blocks (all of it when blocks is nil), or its deletions.
type task struct {
	typ     string
	blocks  *dump.BlockRange
	deleted bool
}

// minChunkBlocks is the smallest piece a table is cut into (64 MiB of
// heap): smaller ones cost more in COPY round trips than they spread.
const minChunkBlocks = 8192

// plan cuts the types into tasks for parallel connections, largest table
// first, each table's pieces together (so that few of its files are open
// at once). A table much larger than its share of the work is cut into
// block ranges, so that a database that is mostly one table still keeps
// every connection busy.
func plan(types []store.TypeInfo, parallel int) []task {
	var total int64
	for _, t := range types {
		total += t.Blocks
	}
	chunk := max(total/int64(parallel*4), minChunkBlocks)
	sorted := append([]store.TypeInfo(nil), types...)
	sortLargestFirst(sorted)
	var tasks []task
	for _, t := range sorted {
		if parallel == 1 || t.Blocks <= chunk {
			tasks = append(tasks, task{typ: t.Type})
			continue
		}
		for from := int64(0); from < t.Blocks; from += chunk {
			to := from + chunk
			if to >= t.Blocks {
				to = -1 // the last range is open: rows the size did not count are in it
			}
			tasks = append(tasks, task{typ: t.Type, blocks: &dump.BlockRange{From: from, To: to}})
		}
	}
	return tasks
}

func sortLargestFirst(types []store.TypeInfo) {
	for i := 1; i < len(types); i++ {
		for j := i; j > 0 && types[j].Blocks > types[j-1].Blocks; j-- {
			types[j], types[j-1] = types[j-1], types[j]
		}
	}
}

// runTasks runs the tasks on parallel connections that all read at the
// snapshot: the coordinator's transaction (which holds the snapshot) and
// parallel-1 more, each joined to it. A task that do refuses on a worker
// with errOnCoordinator is done by the coordinator, after the others. The
// first error stops the others; it is the one returned.
func runTasks(ctx context.Context, dsn string, snap *pg.Snapshot, parallel int, tasks []task, do func(ctx context.Context, tx pgx.Tx, t task) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan task, len(tasks))
	for _, t := range tasks {
		queue <- t
	}
	close(queue)
	deferred := make(chan task, len(tasks))
	work := func(tx pgx.Tx, tasks <-chan task) {
		for t := range tasks {
			if ctx.Err() != nil {
				return
			}
			err := do(ctx, tx, t)
			if errors.Is(err, errOnCoordinator) && tx != snap.Tx() {
				deferred <- t
				continue
			}
			if err != nil {
				cancel(err)
				return
			}
		}
	}
	var wg sync.WaitGroup
	for range min(parallel, len(tasks)) - 1 {
		wg.Go(func() {
			conn, err := pg.ConnectWith(ctx, dsn, sessionSettings(-1))
			if err != nil {
				cancel(err)
				return
			}
			defer conn.Close(context.Background())
			tx, err := pg.BeginAt(ctx, conn, snap.ID)
			if err != nil {
				cancel(err)
				return
			}
			defer tx.Rollback(context.Background()) // read only
			work(tx, queue)
		})
	}
	work(snap.Tx(), queue)
	wg.Wait()
	close(deferred)
	work(snap.Tx(), deferred)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
