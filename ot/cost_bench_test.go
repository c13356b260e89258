package ot

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkTransformThroughHistory: what the server's work for a stale op
// grows with (collab charges for it: docs/protocol.md, Limits). Per
// revision transformed through, the cost is linear in the op's components
// and, since components keep their UTF-8 check, independent of its bytes.
func BenchmarkTransformThroughHistory(b *testing.B) {
	history := make([]Op, 100)
	for i := range history {
		history[i] = Op{Skip(i%50 + 1), Insert("x")}
	}
	run := func(name string, op Op) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o := op
				for _, h := range history {
					var err error
					if o, err = Transform(o, h, Left); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	for _, parts := range []int{2, 200, 2000} {
		var op Op
		for range parts / 2 {
			op = append(op, Skip(1), Insert("ab"))
		}
		run(fmt.Sprintf("parts=%d", parts), op)
	}
	for _, n := range []int{64, 64 << 10} {
		run(fmt.Sprintf("insert=%dB", n), Op{Skip(1), Insert(strings.Repeat("é", n/2))})
		run(fmt.Sprintf("deletetext=%dB", n), Op{Skip(1), DeleteText(strings.Repeat("é", n/2))})
	}
}
