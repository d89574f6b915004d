package scheduler

import (
	"context"
	"math"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
)

// TestTensors: the iterate as the model's named tensors — the layout of
// the built-in family (PyTorch's nn.Sequential names and [out, in] shapes),
// tiling the parameter vector Params returns, bit for bit.
func TestTensors(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Name: "m", Dataset: "regression-sin", Model: "mlp:3x2", Steps: 12, Batch: 5})
	h.wait("m", ckpt.StateDone)
	for _, kind := range []string{KindForward, KindBackward} {
		_, theta, err := h.s.Params(context.Background(), "m", kind, 7)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := h.s.Tensors(context.Background(), "m", kind, 7)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			name  string
			shape []int
		}{{"0.weight", []int{3, 1}}, {"0.bias", []int{3}}, {"2.weight", []int{3, 3}}, {"2.bias", []int{3}}, {"4.weight", []int{1, 3}}, {"4.bias", []int{1}}}
		if len(ts) != len(want) {
			t.Fatalf("%s: %d tensors, want %d", kind, len(ts), len(want))
		}
		off := 0
		for i, x := range ts {
			if x.Name != want[i].name || len(x.Shape) != len(want[i].shape) || x.Shape[0] != want[i].shape[0] || x.Shape[len(x.Shape)-1] != want[i].shape[len(x.Shape)-1] {
				t.Errorf("%s tensor %d: %s %v, want %s %v", kind, i, x.Name, x.Shape, want[i].name, want[i].shape)
			}
			for j, v := range x.Data {
				if math.Float32bits(v) != math.Float32bits(theta[off+j]) {
					t.Fatalf("%s %s[%d] = %v, parameter %d is %v", kind, x.Name, j, v, off+j, theta[off+j])
				}
			}
			off += len(x.Data)
		}
		if off != len(theta) {
			t.Errorf("%s: tensors cover %d of %d parameters", kind, off, len(theta))
		}
	}
	if _, err := h.s.Tensors(context.Background(), "nope", KindForward, 1); !isErr(err, ErrNotFound) {
		t.Errorf("tensors of an unknown run: %v", err)
	}
}

func TestCutTensorsShape(t *testing.T) {
	m, err := nn.NewModel("mlp:4", 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	var layout []family.Tensor
	for _, x := range m.Tensors() {
		layout = append(layout, family.Tensor{Name: x.Name, Shape: x.Shape})
	}
	if _, err := cutTensors(layout, make([]float32, m.Dim()-1)); err == nil {
		t.Error("cutTensors accepted a vector one short of the model")
	}
	if _, err := cutTensors(layout, make([]float32, m.Dim()+1)); err == nil {
		t.Error("cutTensors accepted a vector one longer than the model")
	}
	ts, err := cutTensors(layout, make([]float32, m.Dim()))
	if err != nil || len(ts) != len(layout) {
		t.Fatalf("cutTensors of the model's dimension: %d tensors, %v", len(ts), err)
	}
}
