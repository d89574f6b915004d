package extmodel

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
)

// Prefix is what the model names of this family start with: "ext:NAME".
const Prefix = "ext:"

// Options configure a Family.
type Options struct {
	Logger *slog.Logger
	// MaxChildren bounds the children of one model (the daemon: its
	// workers + 2, for the trainer and a query).
	MaxChildren int
	// StartTimeout is the deadline of a fresh child's hello (importing
	// torch and loading a data set take seconds).
	StartTimeout time.Duration
	// CallTimeout is the deadline of init, evaluate and shutdown, and the
	// base of apply's; StepTimeout is added for every step of an apply
	// chain (a backward job of W steps may take W steps' time).
	CallTimeout, StepTimeout time.Duration
	// Attempts is how many times in a row a request may fail on a child
	// (each time a fresh one) before the failure is the run's.
	Attempts int
	// ShutdownGrace is how long a child may take to exit after shutdown.
	ShutdownGrace time.Duration
	// CancelGrace is how long the reply of a cancelled request (a reset
	// or a pause cancels the jobs in flight) is awaited before its child
	// is killed: within it the child is reused warm.
	CancelGrace time.Duration
}

// DefaultOptions returns the daemon's defaults.
func DefaultOptions() Options {
	return Options{
		Logger: slog.New(slog.DiscardHandler), MaxChildren: 4,
		// A step of the 1×28×28 ResNet-18 at batch 8 is ≈ 11 GFLOP (an
		// estimate, not measured here): a second or two on one core, so
		// 10 s is a wide margin, and a hung child of a chain of 128 steps
		// is found within 23 minutes (--model-step-timeout).
		StartTimeout: 120 * time.Second, CallTimeout: 120 * time.Second, StepTimeout: 10 * time.Second,
		Attempts: 3, ShutdownGrace: 5 * time.Second, CancelGrace: 5 * time.Second,
	}
}

func (o Options) validate() error {
	var bad []string
	if o.MaxChildren < 1 {
		bad = append(bad, fmt.Sprintf("MaxChildren %d < 1", o.MaxChildren))
	}
	if o.Attempts < 1 {
		bad = append(bad, fmt.Sprintf("Attempts %d < 1", o.Attempts))
	}
	if o.StartTimeout <= 0 || o.CallTimeout <= 0 || o.StepTimeout < 0 || o.ShutdownGrace <= 0 || o.CancelGrace < 0 {
		bad = append(bad, "timeouts must be > 0")
	}
	if len(bad) > 0 {
		return fmt.Errorf("extmodel: options: %s", strings.Join(bad, "; "))
	}
	return nil
}

// Family is the external-model family: the models registered at start
// (Register), each a pool of child processes. Safe for concurrent use.
type Family struct {
	opts Options
	mu   struct {
		sync.Mutex
		models map[string]*registered
		order  []string
		closed bool
	}
}

// registered is one registered model: its pool and its hello.
type registered struct {
	name  string
	pool  *pool
	hello Hello
	theta int // ThetaDim: the hello's tensors
	param int // elements of the param tensors (what a buffer mirrors)
}

var _ family.Family = (*Family)(nil)

// New returns a family without models.
func New(opts Options) (*Family, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	f := &Family{opts: opts}
	f.mu.models = map[string]*registered{}
	return f, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name may name an external model: letters,
// digits, '.', '_', '-', at most 64, starting with a letter or digit.
func ValidName(name string) bool { return validName.MatchString(name) }

// Register starts a child of cmd, says hello and keeps its answer as the
// model's layout (Resolve never talks to a child): the child stays in the
// pool. A bad name, a second registration of a name, or a failed hello
// are errors.
func (f *Family) Register(ctx context.Context, name string, cmd Command) error {
	if !ValidName(name) {
		return fmt.Errorf("model name %q: want letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)", echo.Clip(name))
	}
	f.mu.Lock()
	_, dup := f.mu.models[name]
	closed := f.mu.closed
	f.mu.Unlock()
	if dup {
		return fmt.Errorf("model %s registered twice", name)
	}
	if closed {
		return ErrClosed
	}
	p := newPool(name, cmd, f.opts)
	c, hello, err := p.start(ctx)
	if err != nil {
		return fmt.Errorf("register external model: %w", err)
	}
	p.hello = hello
	p.mu.n, p.mu.started = 1, 1
	p.put(c)
	r := &registered{name: name, pool: p, hello: hello}
	for _, t := range hello.Tensors {
		r.theta += t.Elems()
		if t.Param {
			r.param += t.Elems()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.mu.models[name]; dup || f.mu.closed {
		p.close()
		return fmt.Errorf("model %s registered twice", name)
	}
	f.mu.models[name] = r
	f.mu.order = append(f.mu.order, name)
	f.opts.Logger.Info("registered external model", "model", Prefix+name, "child_model", hello.Model,
		"tensors", len(hello.Tensors), "theta", r.theta, "train", hello.Train, "test", hello.Test, "classes", hello.Classes)
	return nil
}

// Close shuts every model's children down. Requests after Close fail with
// ErrClosed.
func (f *Family) Close() error {
	f.mu.Lock()
	f.mu.closed = true
	models := make([]*registered, 0, len(f.mu.models))
	for _, n := range f.mu.order {
		models = append(models, f.mu.models[n])
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range models {
		wg.Add(1)
		go func() { defer wg.Done(); r.pool.close() }()
	}
	wg.Wait()
	return nil
}

// Info describes a registered model (GET /v1/models).
type Info struct {
	Name       string // "ext:NAME"
	Hello      Hello
	ThetaDim   int
	ParamElems int
	Children   int // alive now
	Requests   int64
	Started    int
}

// Models lists the registered models in registration order.
func (f *Family) Models() []Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Info, 0, len(f.mu.order))
	for _, n := range f.mu.order {
		r := f.mu.models[n]
		r.pool.mu.Lock()
		started := r.pool.mu.started
		alive := r.pool.mu.n
		r.pool.mu.Unlock()
		out = append(out, Info{Name: Prefix + n, Hello: r.hello, ThetaDim: r.theta, ParamElems: r.param,
			Children: alive, Requests: r.pool.requests.Load(), Started: started})
	}
	return out
}

// HasModel reports whether model ("ext:NAME") is registered.
func (f *Family) HasModel(model string) bool {
	_, ok := f.lookup(model)
	return ok
}

func (f *Family) lookup(model string) (*registered, bool) {
	name, ok := strings.CutPrefix(model, Prefix)
	if !ok {
		return nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.mu.models[name]
	return r, ok
}

// Name implements family.Family.
func (f *Family) Name() string { return "ext" }

// Knows implements family.Family: every "ext:" name, so that Resolve can
// say which flag registers an unknown one.
func (f *Family) Knows(model string) bool { return strings.HasPrefix(model, Prefix) }

// optimizerNames are the optimizers of the layout rule (docs/protocol.md).
var optimizerNames = []string{"", "sgd", "momentum", "nesterov", "adam", "adamw"}

// optimTensors is the optimizer state of the layout rule after θ.
func optimTensors(h Hello, opt string) []family.Tensor {
	var params []TensorInfo
	for _, t := range h.Tensors {
		if t.Param {
			params = append(params, t)
		}
	}
	bufs := func(kind string) []family.Tensor {
		out := make([]family.Tensor, len(params))
		for i, t := range params {
			out[i] = family.Tensor{Name: fmt.Sprintf("optim.state.%d.%s", i, kind), Shape: slices.Clone(t.Shape)}
		}
		return out
	}
	step := family.Tensor{Name: "optim.step", Shape: []int{}}
	switch opt {
	case "momentum", "nesterov":
		return append(bufs("momentum_buffer"), step)
	case "adam", "adamw":
		return append(append(bufs("exp_avg"), bufs("exp_avg_sq")...), step)
	}
	return nil
}

// optimElems is the number of elements optimTensors lays out.
func optimElems(r *registered, opt string) int64 {
	switch opt {
	case "momentum", "nesterov":
		return int64(r.param) + 1
	case "adam", "adamw":
		return 2*int64(r.param) + 1
	}
	return 0
}

// Resolve implements family.Family from the registration's hello (no
// child is asked).
func (f *Family) Resolve(s *family.Spec) (family.Size, []string) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	r, ok := f.lookup(s.Model)
	if !ok {
		name := strings.TrimPrefix(s.Model, Prefix)
		bad("model %s is not registered: start replayd with --torch-model %s=FILE.py (or --model-cmd %s=CMD)%s",
			echo.Clip(s.Model), echo.Clip(name), echo.Clip(name), f.registeredList())
		return family.Size{}, problems
	}
	own := Prefix + r.name
	if s.Dataset == "" {
		s.Dataset = own
	}
	if s.Dataset != own {
		bad("dataset %q: model %s brings its own data set (%s)", echo.Clip(s.Dataset), own, own)
	}
	if s.DataPath != "" {
		bad("data_path does not apply to external models (the model file loads its data)")
	}
	if s.Init == "" {
		s.Init = "torch"
	}
	if s.Init != "torch" {
		bad("init %q: external models initialise as the model file does (torch)", echo.Clip(s.Init))
	}
	if s.Loss == "" {
		s.Loss = "model"
	}
	if s.Loss != "model" {
		bad("loss %q: external models use the model file's loss (model)", echo.Clip(s.Loss))
	}
	// The batch is checked by the scheduler against Size.Train (its
	// default comes after the family's) and again by Open.
	if !slices.Contains(optimizerNames, s.Optim.Name) {
		bad("optimizer %q: want sgd, momentum, nesterov, adam or adamw", echo.Clip(s.Optim.Name))
	}
	if len(problems) > 0 {
		return family.Size{}, problems
	}
	dim := int64(r.theta) + optimElems(r, s.Optim.Name)
	evalTrain, evalTest := evalSamples(s.EvalSize, r.hello.Train), evalSamples(s.EvalSize, r.hello.Test)
	return family.Size{
		Params: dim, Train: r.hello.Train, Test: r.hello.Test, Outputs: r.hello.Classes,
		// The child holds the data; the daemon holds the evaluation
		// subsets' indices.
		DataBytes: 4 * (evalTrain + evalTest),
		// One round trip holds four byte vectors of the state's size: the
		// state's bytes, the encoded request, the reply's frame and its
		// decoded bin.
		ScratchBytes: 4 * 4 * dim,
	}, nil
}

func (f *Family) registeredList() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.mu.order) == 0 {
		return "; no external model is registered"
	}
	names := make([]string, len(f.mu.order))
	for i, n := range f.mu.order {
		names[i] = Prefix + n
	}
	return "; registered: " + strings.Join(names, ", ")
}

// evalSamples is the size of nn.FixedSubset(n, size, ·).
func evalSamples(size, n int) int64 {
	if size <= 0 || size >= n {
		return int64(n)
	}
	return int64(size)
}

// DataKey implements family.Family: the model's own data.
func (f *Family) DataKey(s family.Spec) string { return s.Model }

// LoadData implements family.Family: the data live in the child; the
// "data" is the registration.
func (f *Family) LoadData(s family.Spec) (family.Data, error) {
	r, ok := f.lookup(s.Model)
	if !ok {
		return nil, fmt.Errorf("model %s: %w", echo.Clip(s.Model), ErrNotRegistered)
	}
	return r, nil
}

// Sampler implements family.Family: the built-in sampler (the daemon keeps
// the batch log, DESIGN §4).
func (f *Family) Sampler(n, batch int, seed uint64) family.Sampler {
	return nn.NewSampler(n, batch, seed)
}

// Open implements family.Family.
func (f *Family) Open(s family.Spec, d family.Data) (family.Model, error) {
	r, ok := d.(*registered)
	if !ok {
		return nil, fmt.Errorf("extmodel: data of type %T", d)
	}
	if s.Batch < 1 || s.Batch > r.hello.Train {
		return nil, fmt.Errorf("batch %d not in [1, %d training samples]", s.Batch, r.hello.Train)
	}
	layout := make([]family.Tensor, 0, len(r.hello.Tensors)+1)
	for _, t := range r.hello.Tensors {
		layout = append(layout, family.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape)})
	}
	layout = append(layout, optimTensors(r.hello, s.Optim.Name)...)
	name := s.Optim.Name
	if name == "" {
		name = "sgd"
	}
	m := &Model{
		r: r, spec: s, layout: layout,
		dim: r.theta + int(optimElems(r, s.Optim.Name)),
		opt: optimizerMsg{Name: name, Momentum: s.Optim.Momentum, Dampening: s.Optim.Dampening,
			Beta1: s.Optim.Beta1, Beta2: s.Optim.Beta2, Eps: s.Optim.Eps, WeightDecay: s.Optim.WeightDecay},
		trainIdx: nn.FixedSubset(r.hello.Train, s.EvalSize, s.Seed),
		testIdx:  nn.FixedSubset(r.hello.Test, s.EvalSize, s.Seed),
		sticky:   new(sticky),
	}
	return m, nil
}

// sticky keeps the first failure of a model's operators and measurers:
// Operators.Apply and Measurer.Measure have no error return, so the
// scheduler asks Err after each forward step and each job. Shared by
// every clone of one Model (one start of one run): once a request has
// failed Attempts times in a row the run fails, whichever goroutine saw it.
type sticky struct{ p atomic.Pointer[error] }

func (s *sticky) set(err error) {
	s.p.CompareAndSwap(nil, &err)
}

func (s *sticky) get() error {
	if p := s.p.Load(); p != nil {
		return *p
	}
	return nil
}

// Model is one run's external model: its spec over a registered model.
// Safe for concurrent use.
type Model struct {
	r                 *registered
	spec              family.Spec
	layout            []family.Tensor
	dim               int
	opt               optimizerMsg
	trainIdx, testIdx []int32
	sticky            *sticky
}

var _ family.Model = (*Model)(nil)

// Dim implements family.Model.
func (m *Model) Dim() int { return m.dim }

// ThetaDim implements family.Model: the hello's tensors.
func (m *Model) ThetaDim() int { return m.r.theta }

// Layout implements family.Model: the hello's tensors, then the optimizer
// state of the layout rule.
func (m *Model) Layout() []family.Tensor { return m.layout }

// Err returns the model's first failure (nil while none).
func (m *Model) Err() error { return m.sticky.get() }

func (m *Model) callTimeout(steps int) time.Duration {
	return m.r.pool.opts.CallTimeout + time.Duration(steps)*m.r.pool.opts.StepTimeout
}

// Init implements family.Model: init(seed) from a child, then the zero
// optimizer state.
func (m *Model) Init(dst []float32) error {
	if len(dst) != m.dim {
		panic(fmt.Sprintf("extmodel: Init of %d into %d", m.dim, len(dst)))
	}
	err := m.r.pool.roundTrip(context.Background(), "init", m.callTimeout(0), func() (any, func(head), reply) {
		req := &initRequest{Seed: m.spec.Seed}
		rep := &initReply{}
		return req, func(h head) { req.head = h }, &checked{rep, func() error { return bytesF32(dst[:m.r.theta], rep.Theta) }}
	})
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	clear(dst[m.r.theta:])
	return nil
}

// checked is a reply whose fields are checked (and copied out) once
// decoded: a wrong length is the child's failure, like garbage.
type checked struct {
	reply
	check func() error
}

// Operators implements family.Model.
func (m *Model) Operators(b family.Batches) (family.Operators, error) {
	return &Operators{m: m, batches: b}, nil
}

// Measurer implements family.Model: evaluate on the fixed subsets.
func (m *Model) Measurer() family.Measurer { return &Measurer{m: m} }

// Operators are one goroutine's operators of an external model: every
// application is a round trip to a child.
type Operators struct {
	m       *Model
	batches family.Batches
	steps   []int32
	idx     []int32
}

var (
	_ family.Operators = (*Operators)(nil)
	_ replay.Chainer   = (*Operators)(nil)
)

// Dim implements replay.Operators.
func (o *Operators) Dim() int { return o.m.dim }

// Err returns the first failure of the model's operators and measurers
// (shared by every clone).
func (o *Operators) Err() error { return o.m.sticky.get() }

// Apply implements replay.Operators: one apply round trip. After a failure
// (Err) it leaves s unchanged.
func (o *Operators) Apply(k int, s []float32) {
	o.chain(context.Background(), s, func(yield func(int, []int32)) { yield(k, o.batches.Batch(k)) }, 1)
}

// Step implements family.Operators (without a step number: 0).
func (o *Operators) Step(s []float32, batch []int32) {
	o.chain(context.Background(), s, func(yield func(int, []int32)) { yield(0, batch) }, 1)
}

// Chain implements replay.Chainer: the whole chain in one round trip.
func (o *Operators) Chain(ctx context.Context, s []float32, steps []int) error {
	return o.chain(ctx, s, func(yield func(int, []int32)) {
		for _, k := range steps {
			yield(k, o.batches.Batch(k))
		}
	}, len(steps))
}

// ReplayBatches re-executes steps from+1 … from+len(batches) with the
// given batches in one round trip (ckpt.Replayer: Verify, Repair).
func (o *Operators) ReplayBatches(ctx context.Context, s []float32, from int, batches [][]int32) error {
	return o.chain(ctx, s, func(yield func(int, []int32)) {
		for i, b := range batches {
			yield(from+i+1, b)
		}
	}, len(batches))
}

func (o *Operators) chain(ctx context.Context, s []float32, each func(yield func(int, []int32)), n int) error {
	if len(s) != o.m.dim {
		panic(fmt.Sprintf("extmodel: state of %d, model %d", len(s), o.m.dim))
	}
	if err := o.m.sticky.get(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	o.steps, o.idx = o.steps[:0], o.idx[:0]
	each(func(k int, b []int32) {
		if len(b) != o.m.spec.Batch {
			panic(fmt.Sprintf("extmodel: batch of %d, spec %d", len(b), o.m.spec.Batch))
		}
		o.steps = append(o.steps, int32(k))
		o.idx = append(o.idx, b...)
	})
	state := f32Bytes(s)
	err := o.m.r.pool.roundTrip(ctx, "apply", o.m.callTimeout(n), func() (any, func(head), reply) {
		req := &applyRequest{State: state, Batches: i32Bytes(o.idx), Steps: i32Bytes(o.steps),
			Batch: o.m.spec.Batch, Seed: o.m.spec.Seed, LR: o.m.spec.LR, Optimizer: o.m.opt}
		rep := &applyReply{}
		return req, func(h head) { req.head = h }, &checked{rep, func() error {
			if len(rep.State) != 4*len(s) {
				return fmt.Errorf("%w: apply: state of %d bytes, want %d", ErrGarbage, len(rep.State), 4*len(s))
			}
			if rep.Losses != nil && len(rep.Losses) != n {
				return fmt.Errorf("%w: apply: %d losses for %d steps", ErrGarbage, len(rep.Losses), n)
			}
			return bytesF32(s, rep.State)
		}}
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err // cancelled: not the model's failure
	}
	err = fmt.Errorf("%s: %w", Prefix+o.m.r.name, err)
	o.m.sticky.set(err)
	return err
}

// Clone implements family.Operators.
func (o *Operators) Clone() family.Operators { return &Operators{m: o.m, batches: o.batches} }

// Affine implements family.Operators: external operators are opaque.
func (o *Operators) Affine() (replay.AffineOperators, bool) { return nil, false }

// Measurer is one goroutine's measurer of an external model.
type Measurer struct{ m *Model }

// Err is the model's first failure, as Operators.Err.
func (e *Measurer) Err() error { return e.m.sticky.get() }

// Measure implements family.Measurer: one evaluate round trip on θ (the
// state's prefix); NaNs after a failure (Err says why).
func (e *Measurer) Measure(s []float32) (trainLoss, testLoss, testAcc float64) {
	nan := math.NaN()
	if e.m.sticky.get() != nil {
		return nan, nan, nan
	}
	theta := s[:e.m.r.theta]
	var rep evaluateReply
	err := e.m.r.pool.roundTrip(context.Background(), "evaluate", e.m.callTimeout(0), func() (any, func(head), reply) {
		req := &evaluateRequest{Theta: f32Bytes(theta), Train: i32Bytes(e.m.trainIdx), Test: i32Bytes(e.m.testIdx)}
		rep = evaluateReply{}
		return req, func(h head) { req.head = h }, &checked{&rep, func() error {
			if rep.TrainLoss == nil || rep.TestLoss == nil || rep.TestAcc == nil {
				return fmt.Errorf("%w: evaluate: train_loss, test_loss and test_acc are required", ErrGarbage)
			}
			return nil
		}}
	})
	if err != nil {
		e.m.sticky.set(fmt.Errorf("%s: %w", Prefix+e.m.r.name, err))
		return nan, nan, nan
	}
	acc := *rep.TestAcc
	if e.m.r.hello.Classes == 0 {
		acc = nan
	}
	return *rep.TrainLoss, *rep.TestLoss, acc
}
