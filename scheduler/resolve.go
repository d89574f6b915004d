package scheduler

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
)

// Strategies, reset sources and reset policies a run may name.
const (
	StrategyWindow  = "window"
	StrategySliding = "sliding"
	StrategyFull    = "full"
	StrategyMemo    = "memo"

	FromBackward = "backward"
	FromForward  = "forward"
	fromInit     = "init"

	PolicyFixed   = "fixed"
	PolicyImprove = "improve"
)

// Defaults of a run spec without a preset.
const (
	DefaultLR          = 0.01
	DefaultBatch       = 8
	DefaultSteps       = 1000
	DefaultSeed        = 1
	DefaultHorizonCap  = 50 // reset_horizon defaults to min(window, 50)
	maxSteps           = 10_000_000
	maxBatch           = 1 << 16
	maxNameLen         = 64
	defaultFMNISTEvery = 10
	defaultFMNISTSize  = 1000
)

// Preset is a named starting point for a run spec; explicit fields of the
// spec override it.
type Preset struct {
	Name, Doc string
	Spec      api.RunSpec
}

// presetRegisters is, for the presets of external models, the replayd flag
// that registers the model (the preset is refused with it otherwise).
var presetRegisters = map[string]string{
	"fmnist-cnn":      "--torch-model fmnist-cnn=examples/cnn_fmnist.py",
	"fmnist-resnet18": "--torch-model fmnist-resnet18=examples/resnet18_fmnist.py",
}

// Presets returns the presets in a fixed order. A zero Window means the
// daemon's default window.
//
//   - quadratic: the paper's §3.1 scalar quadratic, a = 1, y ~ N(0,1),
//     batch 1, lr 0.1, 1000 steps, losses every step.
//   - regression: the paper's A.1 regression, mlp:300x3 on 100 points of
//     sin x, MSE, lr 0.001, batch 10, 2000 steps (200 epochs), losses every
//     10 steps on all 100 points. Measured with the He-init MLP: at lr 0.01
//     and 0.005 the forward run diverges within 400 steps, at 0.002 some
//     backward iterates overflow; at 0.001 the training MSE falls from 0.5
//     (the variance of sin) to ≈ 0.16 in 2000 steps with finite backward
//     iterates.
//   - fmnist-mlp: the paper's §4 run: mlp:500x5 (He-normal init) on
//     Fashion-MNIST, cross-entropy, lr 0.001, batch 8, 2000 steps, a reset
//     at step 1000, the daemon's window; losses every 10 steps on 1000
//     training and 1000 test images.
//   - paper-fig3: the same with the full backward trajectory (strategy
//     full) and the reset at 1000, as in the paper's Figure 3.
//   - fmnist-adam: fmnist-mlp with Adam at lr 0.0003 (betas 0.9/0.999,
//     eps 1e-8), window strategy. The rate is the best of a forward scan
//     with torch.optim.Adam from the run's θ_0 (python -m replay_ref.lrscan,
//     2000 steps, test accuracy): 1e-5 0.802, 3e-5 0.821, 1e-4 0.825,
//     3e-4 0.850, 1e-3 0.825 (its loss rises between steps 1000 and 1500).
//     Adam's step is about lr per coordinate whatever the gradient's scale,
//     so SGD's rate 0.001 is too large for it.
//   - fmnist-linear: least squares (linear model, MSE on one-hot targets) on
//     Fashion-MNIST with the memoized prefix strategy, lr 0.001, batch 8,
//     2000 steps, window 2000 (the full backward trajectory).
func Presets() []Preset {
	fm := api.RunSpec{
		Dataset: "fashion-mnist", Model: "mlp:500x5", Init: "he", Loss: "cross-entropy",
		LR: 0.001, Batch: 8, Steps: 2000, ResetAt: []int{1000},
		EvalEvery: api.Ptr(defaultFMNISTEvery), EvalSize: api.Ptr(defaultFMNISTSize),
	}
	fig3 := fm
	fig3.ResetAt = []int{1000}
	fig3.Strategy = StrategyFull
	adam := fm
	adam.Optimizer, adam.LR, adam.Strategy = OptimAdam, 0.0003, StrategyWindow
	return []Preset{
		{"quadratic", "the paper's §3.1 scalar quadratic (a = 1, y ~ N(0,1), batch 1, lr 0.1)", api.RunSpec{
			Dataset: "quadratic", Model: "scalar", Loss: "quadratic", LR: 0.1, Batch: 1, Steps: 1000, EvalEvery: api.Ptr(1),
		}},
		{"regression", "the paper's A.1 regression (mlp:300x3 on 100 points of sin x, MSE)", api.RunSpec{
			Dataset: "regression-sin", Model: "mlp:300x3", Init: "he", Loss: "mse",
			LR: 0.001, Batch: 10, Steps: 2000, EvalEvery: api.Ptr(10),
		}},
		{"fmnist-mlp", "the paper's §4 Fashion-MNIST run (mlp:500x5, lr 0.001, batch 8, 2000 steps, reset at 1000)", fm},
		{"paper-fig3", "fmnist-mlp with the full backward trajectory, as the paper's Figure 3", fig3},
		{"fmnist-adam", "fmnist-mlp trained by Adam (lr 0.0003, torch's betas and eps, window strategy)", adam},
		{"fmnist-linear", "least squares on Fashion-MNIST with the memoized prefix (full trajectory in linear time)", api.RunSpec{
			Window:  2000, // its steps: the full trajectory (memo honours the window)
			Dataset: "fashion-mnist", Model: "linear", Init: "he", Loss: "mse", LR: 0.001, Batch: 8, Steps: 2000,
			Strategy: StrategyMemo, EvalEvery: api.Ptr(defaultFMNISTEvery), EvalSize: api.Ptr(defaultFMNISTSize),
		}},
		// External models (the operator protocol): PyTorch model files of
		// examples/, registered with replayd --torch-model.
		{"fmnist-cnn", "a small PyTorch CNN on Fashion-MNIST (examples/cnn_fmnist.py; lr 0.01, batch 8, 2000 steps, window 128)", api.RunSpec{
			Model: "ext:fmnist-cnn", LR: 0.01, Batch: 8, Steps: 2000, Window: 128,
			EvalEvery: api.Ptr(defaultFMNISTEvery), EvalSize: api.Ptr(defaultFMNISTSize),
		}},
		{"fmnist-resnet18", "torchvision's ResNet-18 on 1×28×28 Fashion-MNIST (examples/resnet18_fmnist.py; lr 0.01, batch 8, 200 steps, window 32)", api.RunSpec{
			Model: "ext:fmnist-resnet18", LR: 0.01, Batch: 8, Steps: 200, Window: 32,
			EvalEvery: api.Ptr(defaultFMNISTEvery), EvalSize: api.Ptr(500),
		}},
	}
}

// modelRegistry is an optional capability of a Family whose models are
// registered at the daemon's start (external models): whether model is.
type modelRegistry interface{ HasModel(model string) bool }

// presetUsable returns why preset p cannot run with families (its external
// model is not registered), or "".
func presetUsable(families []family.Family, p Preset) string {
	flag := presetRegisters[p.Name]
	if flag == "" {
		return ""
	}
	f, err := Options{Families: families}.familyOf(p.Spec.Model)
	if err == nil {
		if reg, ok := f.(modelRegistry); !ok || reg.HasModel(p.Spec.Model) {
			return ""
		}
	}
	return fmt.Sprintf("preset %s needs the external model %s, which is not registered: start replayd with %s", p.Name, p.Spec.Model, flag)
}

func presetByName(name string) (Preset, bool) {
	for _, p := range Presets() {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Resolve applies the spec's preset and the defaults to spec and validates
// every field, reporting all problems in one error wrapping ErrInvalid. An
// empty Name stays empty (Create chooses a unique one). defaultWindow is the
// window of runs that set none. The model's fields (model, data set, init,
// loss) are the business of the first of families that knows the model:
// it fills their defaults, checks them and counts the model's size
// without building it.
//
// Defaults without a preset: Dataset and Model are required; Init and Loss
// the family's (the built-in family: he, and mse for linear, scalar and the
// regression and quadratic data sets, else cross-entropy); LR 0.01; Batch 8; Steps 1000; Seed 1;
// strategy window; reset_from backward; reset_policy fixed; reset_horizon
// min(window, 50); eval_every 10 on Fashion-MNIST, 1 elsewhere; eval_size
// 1000 on Fashion-MNIST, the whole split elsewhere; checkpoint_every
// ckpt.DefaultCheckpointEvery. Absent (nil) and zero differ for seed,
// backward_from, eval_every (0: losses at the last step only), eval_size
// (0: the whole split) and reset_at ([]: none, also under a preset).
func Resolve(families []family.Family, spec api.RunSpec, defaultWindow int) (ckpt.RunConfig, error) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	s := spec
	if s.Preset != "" {
		p, ok := presetByName(s.Preset)
		if !ok {
			names := make([]string, 0, 5)
			for _, p := range Presets() {
				names = append(names, p.Name)
			}
			return ckpt.RunConfig{}, fmt.Errorf("run spec: unknown preset %q (want %s): %w", echo.Clip(s.Preset), strings.Join(names, ", "), ErrInvalid)
		}
		if why := presetUsable(families, p); why != "" {
			return ckpt.RunConfig{}, fmt.Errorf("run spec: %s: %w", why, ErrInvalid)
		}
		s = overlay(p.Spec, spec)
	}
	if s.Name != "" && (len(s.Name) > maxNameLen || !nameRE.MatchString(s.Name)) {
		bad("name %q: want 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit", echo.Clip(s.Name), maxNameLen)
	}
	if s.Model == "" {
		bad("model is required without a preset (mlp:<widths>, linear, scalar)")
	}
	opt, optProblems := resolveOptim(s)
	problems = append(problems, optProblems...)
	// The family counts the size from the spec, without building the
	// model: a spec of a trillion parameters costs nothing to refuse
	// (admission control then checks it against the daemon's limits).
	dim, ntrain := 0, 0
	if s.Model != "" {
		f, err := Options{Families: families}.familyOf(s.Model)
		if err != nil {
			bad("%s", strings.TrimSuffix(err.Error(), ": "+ErrInvalid.Error()))
		} else {
			fs := family.Spec{
				Model: s.Model, Init: s.Init, Loss: s.Loss, Dataset: s.Dataset, DataPath: s.DataPath,
				LR: s.LR, Batch: s.Batch, EvalSize: deref(s.EvalSize, 0), Optim: opt,
			}
			// Only the size's Params and Train are used here (the
			// scratch estimate, which depends on eval_size, is admission's,
			// from the resolved configuration).
			size, fproblems := f.Resolve(&fs)
			problems = append(problems, fproblems...)
			// An external model's family fills in its own data set.
			s.Init, s.Loss, s.Dataset = fs.Init, fs.Loss, fs.Dataset
			dim, ntrain = int(size.Params), size.Train
		}
	}
	if s.Dataset == "" {
		bad("dataset is required without a preset (fashion-mnist, regression-sin, regression-x2, regression-abs, quadratic)")
	}
	if s.LR == 0 {
		s.LR = DefaultLR
	}
	if !(s.LR > 0) || math.IsInf(s.LR, 0) {
		bad("lr %v: must be a positive finite number", s.LR)
	}
	if s.Batch == 0 {
		s.Batch = DefaultBatch
	}
	switch {
	case s.Batch < 1 || s.Batch > maxBatch:
		bad("batch %d: must be in [1, %d]", s.Batch, maxBatch)
	case ntrain > 0 && s.Batch > ntrain:
		bad("batch %d: larger than the %d training samples of %s", s.Batch, ntrain, s.Dataset)
	}
	if s.Steps == 0 {
		s.Steps = DefaultSteps
	}
	if s.Steps < 1 || s.Steps > maxSteps {
		bad("steps %d: must be in [1, %d]", s.Steps, maxSteps)
	}
	if optimHasStep(opt.Name) && s.Steps > maxOptimSteps {
		bad("steps %d: optimizer %s counts its steps in a float32, at most %d", s.Steps, opt.Name, maxOptimSteps)
	}
	seed := uint64(DefaultSeed)
	if s.Seed != nil {
		seed = *s.Seed
	}
	if s.Window == 0 {
		s.Window = defaultWindow
	}
	if s.Window < 1 {
		bad("window %d: must be ≥ 1", s.Window)
	}
	if s.Strategy == "" {
		s.Strategy = StrategyWindow
	}
	if !slices.Contains([]string{StrategyWindow, StrategySliding, StrategyFull, StrategyMemo}, s.Strategy) {
		bad("strategy %q: want window, sliding, full or memo", s.Strategy)
	}
	if s.ResetFrom == "" {
		s.ResetFrom = FromBackward
	}
	if s.ResetFrom != FromBackward && s.ResetFrom != FromForward {
		bad("reset_from %q: want backward or forward", s.ResetFrom)
	}
	if s.ResetPolicy == "" {
		s.ResetPolicy = PolicyFixed
	}
	switch s.ResetPolicy {
	case PolicyFixed:
	case PolicyImprove:
		if s.Strategy == StrategySliding {
			bad("reset_policy improve needs strategy window, memo or full, not %s", s.Strategy)
		}
	default:
		bad("reset_policy %q: want fixed or improve", s.ResetPolicy)
	}
	if s.ResetHorizon == 0 {
		s.ResetHorizon = min(max(s.Window, 1), DefaultHorizonCap)
	}
	if s.ResetHorizon < 1 {
		bad("reset_horizon %d: must be ≥ 1", s.ResetHorizon)
	}
	backwardFrom := deref(s.BackwardFrom, 0)
	if backwardFrom < 0 || backwardFrom >= s.Steps && s.Steps >= 1 {
		bad("backward_from %d: must be in [0, steps)", backwardFrom)
	}
	resets := slices.Clone(s.ResetAt)
	slices.Sort(resets)
	resets = slices.Compact(resets)
	for _, r := range resets {
		if r < max(1, backwardFrom) || r > s.Steps {
			bad("reset_at %d: must be in [%d, %d] (after backward_from, within the steps)", r, max(1, backwardFrom), s.Steps)
		}
	}
	// Absent: the defaults. An explicit 0 is a choice: eval_every 0
	// measures losses at the last step only (so that a run still has a
	// final figure), eval_size 0 the whole split.
	defEvery, defSize := 1, 0
	// External models evaluate in a child: as costly as Fashion-MNIST's.
	if s.Dataset == "fashion-mnist" || strings.HasPrefix(s.Model, "ext:") {
		defEvery, defSize = defaultFMNISTEvery, defaultFMNISTSize
	}
	evalEvery, evalSize := deref(s.EvalEvery, defEvery), deref(s.EvalSize, defSize)
	if evalEvery < 0 {
		bad("eval_every %d: must be ≥ 0 (0 = losses at the last step only)", evalEvery)
	}
	if evalSize < 0 {
		bad("eval_size %d: must be ≥ 0 (0 = the whole split)", evalSize)
	}
	if s.CheckpointEvery == 0 {
		s.CheckpointEvery = ckpt.DefaultCheckpointEvery
	}
	if s.CheckpointEvery < 1 {
		bad("checkpoint_every %d: must be ≥ 1", s.CheckpointEvery)
	}
	if s.Fingerprint != "" && s.Fingerprint != api.FingerprintAny {
		bad("fingerprint %q: want any, or none for the daemon's (bitwise)", echo.Clip(s.Fingerprint))
	}
	if len(problems) > 0 {
		return ckpt.RunConfig{}, fmt.Errorf("run spec: %s: %w", strings.Join(problems, "; "), ErrInvalid)
	}
	return ckpt.RunConfig{
		Name: s.Name, Model: s.Model, Init: s.Init, Loss: s.Loss, Dataset: s.Dataset, DataPath: s.DataPath,
		LR: s.LR, Batch: s.Batch, Steps: s.Steps, Seed: seed,
		Window: s.Window, Strategy: s.Strategy, ResetAt: resets, ResetFrom: s.ResetFrom,
		ResetPolicy: s.ResetPolicy, ResetHorizon: s.ResetHorizon,
		BackwardFrom: backwardFrom, EvalEvery: evalEvery, EvalSize: evalSize,
		CheckpointEvery: s.CheckpointEvery, Dim: dim,
		Optimizer: opt.Name, Momentum: opt.Momentum, Dampening: opt.Dampening,
		Beta1: opt.Beta1, Beta2: opt.Beta2, Eps: opt.Eps, WeightDecay: opt.WeightDecay,
		Fingerprint: s.Fingerprint,
	}, nil
}

// Optimizers a run may name (torch.optim's, DESIGN §5).
const (
	OptimSGD      = "sgd"
	OptimMomentum = "momentum"
	OptimNesterov = "nesterov"
	OptimAdam     = "adam"
	OptimAdamW    = "adamw"
)

// Optimizer defaults: torch.optim's, except momentum, whose torch default
// 0 would make optimizer momentum plain SGD.
const (
	DefaultMomentum         = 0.9
	DefaultBeta1            = 0.9
	DefaultBeta2            = 0.999
	DefaultEps              = 1e-8
	DefaultAdamWWeightDecay = 0.01
	// maxOptimSteps is the largest step count the state holds exactly: t
	// is stored as a float32 integer (docs/protocol.md).
	maxOptimSteps = 1 << 24
)

// optimFields lists the optimizer settings and the optimizers each applies
// to (weight_decay applies to all).
var optimFields = []struct {
	name string
	get  func(*api.RunSpec) *float64
	to   []string
}{
	{"momentum", func(s *api.RunSpec) *float64 { return s.Momentum }, []string{OptimMomentum, OptimNesterov}},
	{"dampening", func(s *api.RunSpec) *float64 { return s.Dampening }, []string{OptimMomentum, OptimNesterov}},
	{"beta1", func(s *api.RunSpec) *float64 { return s.Beta1 }, []string{OptimAdam, OptimAdamW}},
	{"beta2", func(s *api.RunSpec) *float64 { return s.Beta2 }, []string{OptimAdam, OptimAdamW}},
	{"eps", func(s *api.RunSpec) *float64 { return s.Eps }, []string{OptimAdam, OptimAdamW}},
}

// optimHasStep reports whether the optimizer's state holds a step count.
func optimHasStep(name string) bool { return name != OptimSGD }

// resolveOptim resolves the optimizer fields of s with their defaults and
// checks them as torch.optim's constructors do, plus: a setting that does
// not apply to the optimizer is a problem naming it (a silently ignored
// --beta1 on an SGD run would be a wrong experiment).
func resolveOptim(s api.RunSpec) (family.Optimizer, []string) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	o := family.Optimizer{Name: s.Optimizer}
	if o.Name == "" {
		o.Name = OptimSGD
	}
	if !slices.Contains([]string{OptimSGD, OptimMomentum, OptimNesterov, OptimAdam, OptimAdamW}, o.Name) {
		bad("optimizer %q: want sgd, momentum, nesterov, adam or adamw", echo.Clip(o.Name))
		return family.Optimizer{Name: OptimSGD}, problems
	}
	for _, f := range optimFields {
		if f.get(&s) != nil && !slices.Contains(f.to, o.Name) {
			bad("%s applies to %s, not to optimizer %s", f.name, strings.Join(f.to, " and "), o.Name)
		}
	}
	val := func(p *float64, def float64) float64 {
		if p == nil {
			return def
		}
		return *p
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch o.Name {
	case OptimMomentum, OptimNesterov:
		o.Momentum, o.Dampening = val(s.Momentum, DefaultMomentum), val(s.Dampening, 0)
		if !(o.Momentum >= 0) || !finite(o.Momentum) {
			bad("momentum %v: must be a finite number ≥ 0", o.Momentum)
		} else if o.Momentum == 0 {
			bad("momentum 0 makes optimizer %s plain SGD: use optimizer sgd", o.Name)
		}
		if !(o.Dampening >= 0) || !finite(o.Dampening) {
			bad("dampening %v: must be a finite number ≥ 0", o.Dampening)
		}
		if o.Name == OptimNesterov && o.Dampening != 0 {
			bad("dampening %v: nesterov needs dampening 0", o.Dampening)
		}
	case OptimAdam, OptimAdamW:
		o.Beta1, o.Beta2, o.Eps = val(s.Beta1, DefaultBeta1), val(s.Beta2, DefaultBeta2), val(s.Eps, DefaultEps)
		for _, b := range []struct {
			name string
			v    float64
		}{{"beta1", o.Beta1}, {"beta2", o.Beta2}} {
			if !(b.v >= 0 && b.v < 1) {
				bad("%s %v: must be in [0, 1)", b.name, b.v)
			}
		}
		if !(o.Eps >= 0) || !finite(o.Eps) {
			bad("eps %v: must be a finite number ≥ 0", o.Eps)
		}
	}
	def := 0.0
	if o.Name == OptimAdamW {
		def = DefaultAdamWWeightDecay
	}
	o.WeightDecay = val(s.WeightDecay, def)
	if !(o.WeightDecay >= 0) || !finite(o.WeightDecay) {
		bad("weight_decay %v: must be a finite number ≥ 0", o.WeightDecay)
	}
	return o, problems
}

// deref is *p, or def when p is nil (the field is absent).
func deref(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// overlay returns base with every field that over sets written over it:
// non-nil pointers and slices (an explicit zero, an empty reset_at), and
// the non-zero values of the fields where zero is not a value.
func overlay(base, over api.RunSpec) api.RunSpec {
	s := base
	s.Name = over.Name
	s.Preset = over.Preset
	setS := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	setI := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	setS(&s.Dataset, over.Dataset)
	setS(&s.DataPath, over.DataPath)
	setS(&s.Model, over.Model)
	setS(&s.Init, over.Init)
	setS(&s.Loss, over.Loss)
	if over.LR != 0 {
		s.LR = over.LR
	}
	setI(&s.Batch, over.Batch)
	setI(&s.Steps, over.Steps)
	if over.Seed != nil {
		s.Seed = over.Seed
	}
	setI(&s.Window, over.Window)
	setS(&s.Strategy, over.Strategy)
	if over.ResetAt != nil {
		s.ResetAt = over.ResetAt
	}
	setS(&s.ResetFrom, over.ResetFrom)
	setS(&s.ResetPolicy, over.ResetPolicy)
	setI(&s.ResetHorizon, over.ResetHorizon)
	setP := func(dst **int, v *int) {
		if v != nil {
			*dst = v
		}
	}
	setP(&s.BackwardFrom, over.BackwardFrom)
	setP(&s.EvalEvery, over.EvalEvery)
	setP(&s.EvalSize, over.EvalSize)
	setI(&s.CheckpointEvery, over.CheckpointEvery)
	setS(&s.Optimizer, over.Optimizer)
	setF := func(dst **float64, v *float64) {
		if v != nil {
			*dst = v
		}
	}
	setF(&s.Momentum, over.Momentum)
	setF(&s.Dampening, over.Dampening)
	setF(&s.Beta1, over.Beta1)
	setF(&s.Beta2, over.Beta2)
	setF(&s.Eps, over.Eps)
	setF(&s.WeightDecay, over.WeightDecay)
	setS(&s.Fingerprint, over.Fingerprint)
	// A preset's reset at 1000 does not fit a shorter run: drop the resets
	// the override of Steps pushed out of range unless they were explicit.
	if over.ResetAt == nil && over.Steps != 0 {
		s.ResetAt = slices.DeleteFunc(slices.Clone(s.ResetAt), func(r int) bool { return r > s.Steps })
	}
	return s
}

// specOf is the fully resolved api.RunSpec of a stored run: every field
// set, reset_at [] when there are none, so that it can be sent back as is.
func specOf(cfg ckpt.RunConfig, preset string) api.RunSpec {
	seed := cfg.Seed
	resets := cfg.ResetAt
	if resets == nil {
		resets = []int{}
	}
	sp := api.RunSpec{
		Name: cfg.Name, Preset: preset, Dataset: cfg.Dataset, DataPath: cfg.DataPath, Model: cfg.Model,
		Init: cfg.Init, Loss: cfg.Loss, LR: cfg.LR, Batch: cfg.Batch, Steps: cfg.Steps, Seed: &seed,
		Window: cfg.Window, Strategy: cfg.Strategy, ResetAt: resets, ResetFrom: cfg.ResetFrom,
		ResetPolicy: cfg.ResetPolicy, ResetHorizon: cfg.ResetHorizon, BackwardFrom: api.Ptr(cfg.BackwardFrom),
		EvalEvery: api.Ptr(cfg.EvalEvery), EvalSize: api.Ptr(cfg.EvalSize), CheckpointEvery: cfg.CheckpointEvery,
		Fingerprint: cfg.Fingerprint,
	}
	// The optimizer with every setting that applies to it; a record from
	// before optimizers ("") is plain SGD.
	sp.Optimizer = cfg.Optimizer
	if sp.Optimizer == "" {
		sp.Optimizer = OptimSGD
	}
	switch sp.Optimizer {
	case OptimMomentum, OptimNesterov:
		sp.Momentum, sp.Dampening = api.Ptr(cfg.Momentum), api.Ptr(cfg.Dampening)
	case OptimAdam, OptimAdamW:
		sp.Beta1, sp.Beta2, sp.Eps = api.Ptr(cfg.Beta1), api.Ptr(cfg.Beta2), api.Ptr(cfg.Eps)
	}
	sp.WeightDecay = api.Ptr(cfg.WeightDecay)
	return sp
}
