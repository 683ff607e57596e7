package load

import (
	"fmt"
	"testing"
)

func TestTxidBlocksGrow(t *testing.T) {
	var asked []int
	next := int64(0)
	b := &txidBlocks{fetch: func(n int) ([]int64, error) {
		asked = append(asked, n)
		ids := make([]int64, n)
		for i := range ids {
			next++
			ids[i] = next
		}
		return ids, nil
	}}
	for want := int64(1); want <= 300000; want++ {
		got, err := b.next()
		if err != nil || got != want {
			t.Fatalf("next() = %d, %v; want %d", got, err, want)
		}
	}
	if fmt.Sprint(asked[:6]) != "[256 1024 4096 16384 65536 65536]" {
		t.Errorf("block sizes %v", asked)
	}
}
