package nn

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/replay-sgd/replay/internal/echo"
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
//
// NewModel first counts the parameters with CountParams, so a spec beyond
// MaxLayers layers or MaxParams parameters is an error before anything is
// allocated.
func NewModel(spec string, in, out int) (*Model, error) {
	if _, err := CountParams(spec, in, out); err != nil {
		return nil, err
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
			return nil, fmt.Errorf("model %q: %w", echo.Clip(spec), err)
		}
	default:
		return nil, fmt.Errorf("model %q (want linear, scalar or mlp:<widths>): %w", echo.Clip(spec), ErrSpec)
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

// Structural limits of a model spec, checked by CountParams (and so by
// NewModel) before any allocation. MaxParams keeps every count and offset
// far from integer overflow; the daemon's own limits (the store's value size,
// its memory budget) are much lower and checked by its admission control.
const (
	MaxLayers = 1024
	MaxParams = 1 << 40
)

// maxSpecLen bounds the spec string a model may have (long enough for any
// list of MaxLayers widths written out).
const maxSpecLen = 8 << 10

// CountParams returns the number of parameters of the model NewModel(spec,
// in, out) would build, in time proportional to the length of spec and
// without allocating per layer: a group "WxR" is counted in closed form.
// Every product is checked against MaxParams before it is formed, so no
// spec can overflow. A spec with more than MaxLayers affine layers or more
// than MaxParams parameters is an error wrapping ErrSpec; a malformed spec
// wraps ErrSpec, a bad in/out ErrShape (as NewModel).
func CountParams(spec string, in, out int) (int64, error) {
	sz, err := SizeOf(spec, in, out)
	return sz.Params, err
}

// SpecSize is what a model spec costs, counted without building the model.
type SpecSize struct {
	// Params is the length of the flat parameter vector (Model.Dim).
	Params int64
	// Units is the number of outputs of all affine layers, the hidden
	// widths and the output: the scratch space of a pass over a batch of b
	// samples is about b × (In + 2 Units) floats (activations and deltas).
	Units int64
	// Layers is the number of affine layers.
	Layers int
}

// SizeOf is CountParams with the other sizes of the spec (see SpecSize).
func SizeOf(spec string, in, out int) (SpecSize, error) {
	units := int64(out)
	if spec == "scalar" {
		n, err := countParams(spec, in, out, nil)
		return SpecSize{Params: n, Units: 1, Layers: 1}, err
	}
	layers := 1
	n, err := countParams(spec, in, out, func(w, r int64) { units += w * r; layers += int(r) })
	if err != nil {
		return SpecSize{}, err
	}
	return SpecSize{Params: n, Units: units, Layers: layers}, nil
}

// countParams counts as CountParams does and calls group, if not nil, with
// each hidden group (width, repeat) once its parameters are counted (so
// width×repeat cannot overflow).
func countParams(spec string, in, out int, onGroup func(w, r int64)) (int64, error) {
	if in < 0 || out < 1 || int64(in) > MaxParams || int64(out) > MaxParams {
		return 0, fmt.Errorf("model %q with %d inputs and %d outputs: %w", echo.Clip(spec), in, out, ErrShape)
	}
	switch {
	case spec == "linear":
		return mulAdd(int64(in), int64(out), int64(out), spec)
	case spec == "scalar":
		if out != 1 {
			return 0, fmt.Errorf("model scalar has one output, the data has %d: %w", out, ErrShape)
		}
		return 1, nil
	case !strings.HasPrefix(spec, "mlp:"):
		return 0, fmt.Errorf("model %q (want linear, scalar or mlp:<widths>): %w", echo.Clip(spec), ErrSpec)
	}
	if len(spec) > maxSpecLen {
		return 0, fmt.Errorf("model spec of %d bytes: longer than %d: %w", len(spec), maxSpecLen, ErrSpec)
	}
	// First the groups, their layers and the parameters in float64 (no
	// overflow: at most maxSpecLen/2 groups of at most MaxParams layers),
	// so that a refusal can name the size.
	type group struct{ w, r int64 }
	var groups []group
	layers := int64(1) // the output layer
	approx, prevF := 0.0, float64(in)
	for _, g := range strings.Split(spec[len("mlp:"):], ",") {
		w, r, err := parseGroup(g)
		if err != nil {
			return 0, fmt.Errorf("model %q: %w", echo.Clip(spec), err)
		}
		groups = append(groups, group{w, r})
		layers += r
		wf := float64(w)
		approx += prevF*wf + wf + float64(r-1)*(wf*wf+wf)
		prevF = wf
	}
	approx += prevF*float64(out) + float64(out)
	if layers > MaxLayers {
		return 0, fmt.Errorf("model %q has %d layers, more than the limit of %d: %w", echo.Clip(spec), layers, MaxLayers, ErrSpec)
	}
	if approx > MaxParams {
		return 0, fmt.Errorf("model %q has %.3g parameters, more than the limit of %d: %w", echo.Clip(spec), approx, int64(MaxParams), ErrSpec)
	}
	// Then exactly, each step still checked.
	var total int64
	prev := int64(in)
	add := func(n int64) error {
		if total > MaxParams-n {
			return fmt.Errorf("model %q: more than %d parameters: %w", echo.Clip(spec), int64(MaxParams), ErrSpec)
		}
		total += n
		return nil
	}
	for _, g := range groups {
		w, r := g.w, g.r
		// The first layer of the group maps prev→w, the r−1 others w→w.
		first, err := mulAdd(prev, w, w, spec)
		if err != nil {
			return 0, err
		}
		if err := add(first); err != nil {
			return 0, err
		}
		if r > 1 {
			each, err := mulAdd(w, w, w, spec)
			if err != nil {
				return 0, err
			}
			rest, err := mulAdd(each, r-1, 0, spec)
			if err != nil {
				return 0, err
			}
			if err := add(rest); err != nil {
				return 0, err
			}
		}
		if onGroup != nil {
			onGroup(w, r)
		}
		prev = w
	}
	last, err := mulAdd(prev, int64(out), int64(out), spec)
	if err != nil {
		return 0, err
	}
	if err := add(last); err != nil {
		return 0, err
	}
	return total, nil
}

// mulAdd returns a·b + c for non-negative operands, or an error if the
// result would exceed MaxParams.
func mulAdd(a, b, c int64, spec string) (int64, error) {
	if a != 0 && b > (MaxParams-c)/a {
		return 0, fmt.Errorf("model %q: more than %d parameters: %w", echo.Clip(spec), int64(MaxParams), ErrSpec)
	}
	return a*b + c, nil
}

// parseGroup parses one group "W" or "WxR" of an MLP spec, each number in
// [1, MaxParams].
func parseGroup(g string) (w, r int64, err error) {
	ws, rs, rep := strings.Cut(g, "x")
	w, err = strconv.ParseInt(ws, 10, 64)
	if err != nil || w < 1 || w > MaxParams {
		return 0, 0, fmt.Errorf("bad width %q: %w", echo.Clip(ws), ErrSpec)
	}
	r = 1
	if rep {
		if r, err = strconv.ParseInt(rs, 10, 64); err != nil || r < 1 || r > MaxParams {
			return 0, 0, fmt.Errorf("bad repeat count %q: %w", echo.Clip(rs), ErrSpec)
		}
	}
	return w, r, nil
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
