package export

import (
	"io"
	"testing"
)

// BenchmarkWriteSafetensorsMLP500x5 writes the parameters of the paper's
// 784-500×5-10 MLP (≈1.4 M float32).
func BenchmarkWriteSafetensorsMLP500x5(b *testing.B) {
	var ts []Tensor
	in := 784
	for i, out := range []int{500, 500, 500, 500, 500, 10} {
		ts = append(ts,
			Tensor{Name: string(rune('0'+2*i)) + ".weight", Shape: []int{out, in}, Data: make([]float32, out*in)},
			Tensor{Name: string(rune('0'+2*i)) + ".bias", Shape: []int{out}, Data: make([]float32, out)})
		in = out
	}
	n := 0
	for _, t := range ts {
		n += 4 * len(t.Data)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		if err := WriteSafetensors(io.Discard, ts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteNpyInt64 writes a batch log of 100 000 steps of batch 8.
func BenchmarkWriteNpyInt64(b *testing.B) {
	data := make([]int64, 100000*8)
	b.SetBytes(int64(8 * len(data)))
	for b.Loop() {
		if err := WriteNpyInt64(io.Discard, 100000, 8, data); err != nil {
			b.Fatal(err)
		}
	}
}
