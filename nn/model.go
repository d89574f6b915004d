package nn

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tensor names one block of a flat parameter vector, as PyTorch's
// nn.Sequential state_dict would: Shape is row-major and the block is
// theta[Offset : Offset+prod(Shape)].
type Tensor struct {
	Name   string
	Shape  []int
	Offset int
}

// Size is the number of elements of t.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

type modelKind int

const (
	kindMLP modelKind = iota + 1
	kindLinear
	kindScalar
)

// layer is one affine map z = W a + b of a model. Its weight W is out×in
// row-major at theta[w:w+out*in], its bias at theta[b:b+out].
type layer struct {
	in, out int
	w, b    int
}

// Model is an architecture: the shapes of its layers and the layout of its
// flat parameter vector. It holds no parameters and is immutable, so one
// Model may be shared by any number of goroutines.
//
// Layout: for each affine layer l = 0, 1, …, its weight [out, in] row-major,
// then its bias [out]. This is exactly the order and shape of the state_dict
// of torch.nn.Sequential(Linear, ReLU, Linear, ReLU, …, Linear); the tensors
// are named "0.weight", "0.bias", "2.weight", "2.bias", … (the ReLUs take the
// odd indices). The scalar model has one parameter named "theta" of shape [1].
type Model struct {
	spec    string
	kind    modelKind
	in, out int
	layers  []layer
	dim     int
}

// NewModel returns the model named by spec for in inputs and out outputs:
//
//   - "linear": one affine layer in→out;
//   - "scalar": one parameter θ whose prediction is θ for every input (out
//     must be 1; the input is ignored);
//   - "mlp:<widths>": ReLU hidden layers then an affine output layer.
//     <widths> is a list of groups separated by ',' each "W" (one layer of
//     width W) or "WxR" (R layers of width W): "mlp:500x5" is five hidden
//     layers of 500, "mlp:32" one of 32, "mlp:64x2,32" widths 64, 64, 32.
func NewModel(spec string, in, out int) (*Model, error) {
	if in < 0 || out < 1 {
		return nil, fmt.Errorf("model %q with %d inputs and %d outputs: %w", spec, in, out, ErrShape)
	}
	m := &Model{spec: spec, in: in, out: out}
	var widths []int
	switch {
	case spec == "linear":
		m.kind = kindLinear
	case spec == "scalar":
		if out != 1 {
			return nil, fmt.Errorf("model scalar has one output, the data has %d: %w", out, ErrShape)
		}
		m.kind = kindScalar
		m.layers = []layer{{in: 0, out: 1}}
		m.dim = 1
		return m, nil
	case strings.HasPrefix(spec, "mlp:"):
		m.kind = kindMLP
		var err error
		if widths, err = parseWidths(spec[len("mlp:"):]); err != nil {
			return nil, fmt.Errorf("model %q: %w", spec, err)
		}
	default:
		return nil, fmt.Errorf("model %q (want linear, scalar or mlp:<widths>): %w", spec, ErrSpec)
	}
	prev := in
	for _, w := range append(widths, out) {
		l := layer{in: prev, out: w, w: m.dim}
		l.b = l.w + w*prev
		m.dim = l.b + w
		m.layers = append(m.layers, l)
		prev = w
	}
	return m, nil
}

func parseWidths(s string) ([]int, error) {
	var widths []int
	for _, g := range strings.Split(s, ",") {
		ws, rs, rep := strings.Cut(g, "x")
		w, err := strconv.Atoi(ws)
		if err != nil || w < 1 {
			return nil, fmt.Errorf("bad width %q: %w", ws, ErrSpec)
		}
		r := 1
		if rep {
			if r, err = strconv.Atoi(rs); err != nil || r < 1 {
				return nil, fmt.Errorf("bad repeat count %q: %w", rs, ErrSpec)
			}
		}
		for range r {
			widths = append(widths, w)
		}
	}
	return widths, nil
}

// Spec returns the spec NewModel was given.
func (m *Model) Spec() string { return m.spec }

// Dim returns the length of the flat parameter vector.
func (m *Model) Dim() int { return m.dim }

// In returns the number of inputs.
func (m *Model) In() int { return m.in }

// Out returns the number of outputs.
func (m *Model) Out() int { return m.out }

// Tensors returns the named blocks of the parameter vector in layout order;
// they tile [0, Dim) without gaps.
func (m *Model) Tensors() []Tensor {
	if m.kind == kindScalar {
		return []Tensor{{Name: "theta", Shape: []int{1}, Offset: 0}}
	}
	ts := make([]Tensor, 0, 2*len(m.layers))
	for i, l := range m.layers {
		ts = append(ts,
			Tensor{Name: fmt.Sprintf("%d.weight", 2*i), Shape: []int{l.out, l.in}, Offset: l.w},
			Tensor{Name: fmt.Sprintf("%d.bias", 2*i), Shape: []int{l.out}, Offset: l.b})
	}
	return ts
}

// Init schemes accepted by Model.Init.
const (
	InitHe     = "he"     // weights N(0, 2/fan_in), biases 0 (the default)
	InitLeCun  = "lecun"  // weights N(0, 1/fan_in), biases 0
	InitGlorot = "glorot" // weights N(0, 2/(fan_in+fan_out)), biases 0
	InitTorch  = "torch"  // weights and biases U(±1/√fan_in): torch.nn.Linear's default
)

// Init writes initial parameters into theta (len Dim), a pure function of
// (model, scheme, seed). scheme "" means "he". Values are drawn from one PCG
// stream, layer by layer, the weight row-major then (torch only) the bias.
//
// The scalar model treats θ as a weight with fan_in = fan_out = 1, so "he"
// draws θ0 ~ N(0, 2), "lecun" and "glorot" N(0, 1), "torch" U(−1, 1).
func (m *Model) Init(theta []float32, scheme string, seed uint64) error {
	if len(theta) != m.dim {
		panic(fmt.Sprintf("nn: Init: len(theta) = %d, model dim %d", len(theta), m.dim))
	}
	r := newRNG(seed, streamInit, 0)
	for _, l := range m.layers {
		// A layer without inputs (linear on the quadratic data) counts as
		// fan_in 1 so that every scheme stays finite.
		fanIn, fanOut := float64(max(l.in, 1)), float64(l.out)
		w, b := theta[l.w:l.w+l.in*l.out], theta[l.b:l.b+l.out]
		if m.kind == kindScalar {
			fanIn, fanOut = 1, 1
			w, b = theta, nil
		}
		var std float64
		switch scheme {
		case "", InitHe:
			std = math.Sqrt(2 / fanIn)
		case InitLeCun:
			std = math.Sqrt(1 / fanIn)
		case InitGlorot:
			std = math.Sqrt(2 / (fanIn + fanOut))
		case InitTorch:
			bound := 1 / math.Sqrt(fanIn)
			for i := range w {
				w[i] = float32(r.uniform(-bound, bound))
			}
			for i := range b {
				b[i] = float32(r.uniform(-bound, bound))
			}
			continue
		default:
			return fmt.Errorf("init %q (want he, lecun, glorot or torch): %w", scheme, ErrSpec)
		}
		for i := range w {
			w[i] = float32(std * r.normal())
		}
		clear(b)
	}
	return nil
}
