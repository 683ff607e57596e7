package export

import (
	"fmt"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// tables makes plan's input: the types T0, T1, ... of these block counts.
func tables(blocks ...int64) []store.TypeInfo {
	types := make([]store.TypeInfo, len(blocks))
	for i, b := range blocks {
		types[i] = store.TypeInfo{Type: fmt.Sprintf("T%d", i), Blocks: b}
	}
	return types
}

// checkPlan checks what holds for every plan: each type's tasks come
// together, largest table first; a type is one whole-table task when there
// is one connection or it is no larger than a chunk, else it is
// ranges that start at block 0, follow each other with no gap and no
// overlap, and end open (To -1, so rows the size did not count are read
// too); every range but the last is chunk blocks, the last 1 to chunk.
// It returns each type's tasks.
func checkPlan(t *testing.T, types []store.TypeInfo, parallel int, tasks []task) map[string][]task {
	t.Helper()
	blocks := map[string]int64{}
	for _, ti := range types {
		blocks[ti.Type] = ti.Blocks
	}
	byType := map[string][]task{}
	var order []string
	for i, tk := range tasks {
		if tk.deleted {
			t.Errorf("task %d: a deletions task from plan", i)
		}
		if _, ok := blocks[tk.typ]; !ok {
			t.Fatalf("task %d: type %q not asked for", i, tk.typ)
		}
		if len(byType[tk.typ]) == 0 {
			order = append(order, tk.typ)
		} else if order[len(order)-1] != tk.typ {
			t.Errorf("task %d: %s's tasks are not together: %v", i, tk.typ, tasks)
		}
		byType[tk.typ] = append(byType[tk.typ], tk)
	}
	if len(order) != len(types) {
		t.Errorf("%d types planned, want %d", len(order), len(types))
	}
	for i := 1; i < len(order); i++ {
		if blocks[order[i]] > blocks[order[i-1]] {
			t.Errorf("%s (%d blocks) after %s (%d): not largest first", order[i], blocks[order[i]], order[i-1], blocks[order[i-1]])
		}
	}
	var total int64
	for _, ti := range types {
		total += ti.Blocks
	}
	chunk := max(total/int64(parallel*4), minChunkBlocks)
	for typ, ts := range byType {
		if parallel == 1 || blocks[typ] <= chunk {
			// Read whole, with no ctid condition at all.
			if len(ts) != 1 || ts[0].blocks != nil {
				t.Errorf("%s (%d blocks, chunk %d, %d connections): tasks %+v, want one for the whole table", typ, blocks[typ], chunk, parallel, ts)
			}
			continue
		}
		next := int64(0)
		for i, tk := range ts {
			b := tk.blocks
			if b == nil {
				t.Fatalf("%s: a whole-table task among its ranges: %v", typ, ts)
			}
			if b.From != next {
				t.Errorf("%s range %d starts at block %d, want %d (a gap or an overlap)", typ, i, b.From, next)
			}
			last := i == len(ts)-1
			if last {
				if b.To != -1 {
					t.Errorf("%s: the last range ends at %d, want open (-1)", typ, b.To)
				}
				if n := blocks[typ] - b.From; n < 1 || n > chunk {
					t.Errorf("%s: the last range has %d blocks, want 1 to %d", typ, n, chunk)
				}
				continue
			}
			if b.To-b.From != chunk {
				t.Errorf("%s range %d is [%d,%d): %d blocks, want %d", typ, i, b.From, b.To, b.To-b.From, chunk)
			}
			next = b.To
		}
	}
	return byType
}

func TestPlanCoversEveryBlockOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		blocks   []int64
		parallel int
		ranges   []int // how many tasks each type (in the order given) gets
	}{
		{"no types", nil, 4, nil},
		{"an empty table", []int64{0}, 2, []int{1}},
		{"one block", []int64{1}, 2, []int{1}},
		{"fewer blocks than workers", []int64{3}, 8, []int{1}},
		{"at the smallest chunk", []int64{minChunkBlocks}, 2, []int{1}},
		{"one block over the smallest chunk", []int64{minChunkBlocks + 1}, 2, []int{2}},
		{"one connection never cuts", []int64{1 << 20, 3}, 1, []int{1, 1}},
		// 100,000 blocks on 2 connections: chunks of 100000/8 = 12500.
		{"one big table", []int64{100000}, 2, []int{8}},
		{"one big table, uneven", []int64{100003}, 2, []int{9}},
		// Total 200,000 on 4: chunks of 12500; the small tables stay whole.
		{"a big table and small ones", []int64{5000, 150000, 0, 45000}, 4, []int{1, 12, 1, 4}},
		{"equal tables", []int64{40000, 40000, 40000}, 3, []int{4, 4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			types := tables(tc.blocks...)
			tasks := plan(types, tc.parallel)
			byType := checkPlan(t, types, tc.parallel, tasks)
			for i, ti := range types {
				if got := len(byType[ti.Type]); got != tc.ranges[i] {
					t.Errorf("%s (%d blocks): %d tasks, want %d", ti.Type, ti.Blocks, got, tc.ranges[i])
				}
			}
		})
	}
}

// The pieces of one table are as even as the chunk makes them: all of one
// size but the last, which takes the rest, however little (a table one
// block over the chunk makes a one-block range).
func TestPlanChunks(t *testing.T) {
	tasks := plan(tables(100003), 2)
	want := []struct{ from, to int64 }{
		{0, 12500}, {12500, 25000}, {25000, 37500}, {37500, 50000},
		{50000, 62500}, {62500, 75000}, {75000, 87500}, {87500, 100000}, {100000, -1},
	}
	if len(tasks) != len(want) {
		t.Fatalf("%d tasks, want %d: %v", len(tasks), len(want), tasks)
	}
	for i, w := range want {
		if b := tasks[i].blocks; b == nil || b.From != w.from || b.To != w.to {
			t.Errorf("task %d: %+v, want [%d,%d)", i, b, w.from, w.to)
		}
	}
}

// Largest first; tables of one size keep the order they were given in.
func TestPlanOrder(t *testing.T) {
	tasks := plan(tables(10, 30, 20, 30, 0), 1)
	var got []string
	for _, tk := range tasks {
		got = append(got, tk.typ)
	}
	if fmt.Sprint(got) != "[T1 T3 T2 T0 T4]" {
		t.Errorf("order %v, want [T1 T3 T2 T0 T4]", got)
	}
}

// Whatever the sizes and connections, every block is read once.
func TestPlanProperty(t *testing.T) {
	sizes := []int64{0, 1, 7, minChunkBlocks - 1, minChunkBlocks, minChunkBlocks + 1, 3*minChunkBlocks + 5, 123457, 1 << 20}
	for parallel := 1; parallel <= 9; parallel++ {
		for i := range sizes {
			for j := range sizes {
				types := tables(sizes[i], sizes[j], sizes[(i+j)%len(sizes)])
				checkPlan(t, types, parallel, plan(types, parallel))
			}
		}
	}
}
