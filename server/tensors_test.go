package server

import (
	"testing"

	"github.com/replay-sgd/replay/export"
)

// TestCheckTensors: a backend's tensors whose data does not fill their
// shape (or no tensor at all) are an internal error, never encoded.
func TestCheckTensors(t *testing.T) {
	good := []export.Tensor{{Name: "0.weight", Shape: []int{2, 3}, Data: make([]float32, 6)}, {Name: "0.bias", Shape: []int{2}, Data: make([]float32, 2)}}
	if err := checkTensors(good); err != nil {
		t.Errorf("good tensors: %v", err)
	}
	for _, bad := range [][]export.Tensor{nil, {{Name: "w", Shape: []int{2, 3}, Data: make([]float32, 5)}}} {
		if err := checkTensors(bad); err == nil {
			t.Errorf("checkTensors(%v) accepted", bad)
		}
	}
}
