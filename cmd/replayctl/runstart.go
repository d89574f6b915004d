package main

import (
	"fmt"
	"strconv"

	"github.com/replay-sgd/replay/api"
)

var runStartCmd = command{
	name: "run start",
	synopsis: "[--name N] [--preset P] [--dataset D] [--data-path DIR] [--model SPEC] [--lr F] [--batch N] [--steps N]\n" +
		"                         [--seed N] [--window N] [--strategy S] [--reset-at N|none] [--reset-from forward|backward]\n" +
		"                         [--reset-policy fixed|improve] [--backward-from N] [--eval-every N] [--eval-size N]\n" +
		"                         [--checkpoint-every N] [--optimizer sgd|momentum|nesterov|adam|adamw] [--momentum F]\n" +
		"                         [--dampening F] [--beta1 F] [--beta2 F] [--eps F] [--weight-decay F] [--fingerprint any]",
	summary: "create and start a run; explicit flags override the preset's values",
	example: "replayctl run start --preset fmnist-mlp --name fmnist --steps 5000 --window 256\n" +
		"replayctl run start --preset quadratic --lr 0.05 --reset-at 100 --reset-at 200\n" +
		"replayctl run start --preset fmnist-mlp --reset-at none --eval-every 0\n" +
		"replayctl run start --preset fmnist-mlp --optimizer adam --lr 0.0001\n" +
		"replayctl run start --preset quadratic --optimizer momentum --momentum 0.9\n" +
		"replayctl run start --preset fmnist-mlp --fingerprint any   # remote workers of every machine kind; not bitwise",
	run: runRunStart,
}

func runRunStart(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var spec api.RunSpec
	var seed uint64
	var resetAt []string
	var backwardFrom, evalEvery, evalSize int
	fs.StringVar(&spec.Name, "name", "", "run name (default chosen by the daemon)")
	fs.StringVar(&spec.Preset, "preset", "", "preset: quadratic, regression, fmnist-mlp, paper-fig3, fmnist-adam, fmnist-linear")
	fs.StringVar(&spec.Dataset, "dataset", "", "data set: fashion-mnist, regression-sin, regression-x2, regression-abs, quadratic")
	fs.StringVar(&spec.DataPath, "data-path", "", "directory of the data set's files (Fashion-MNIST IDX)")
	fs.StringVar(&spec.Model, "model", "", "model: mlp:WIDTHxDEPTH (e.g. mlp:500x5, mlp:32), linear, scalar")
	fs.StringVar(&spec.Init, "init", "", "initialisation: he, lecun, glorot, torch")
	fs.StringVar(&spec.Loss, "loss", "", "loss: cross-entropy, mse, quadratic")
	fs.Float64Var(&spec.LR, "lr", 0, "learning rate")
	fs.IntVar(&spec.Batch, "batch", 0, "batch size")
	fs.IntVar(&spec.Steps, "steps", 0, "number of forward steps")
	fs.Uint64Var(&seed, "seed", 0, "random seed (initialisation, batch order)")
	fs.IntVar(&spec.Window, "window", 0, "backward window W: the anchor moves when n − r would exceed W")
	fs.StringVar(&spec.Strategy, "strategy", "", "backward strategy: window, sliding, full, memo")
	fs.StringSliceVar(&resetAt, "reset-at", nil, "move the anchor at these steps (repeat or comma-separate); none: no resets, not even the preset's")
	fs.StringVar(&spec.ResetFrom, "reset-from", "", "anchor start point at a reset: forward or backward")
	fs.StringVar(&spec.ResetPolicy, "reset-policy", "", "fixed, or improve (keep a new anchor only if it evaluates better)")
	fs.IntVar(&spec.ResetHorizon, "reset-horizon", 0, "steps over which the improve policy compares anchors")
	fs.IntVar(&backwardFrom, "backward-from", 0, "backward iterates for the steps after N only (0: from step 1)")
	fs.IntVar(&evalEvery, "eval-every", 0, "evaluate losses and accuracy every N steps and at the last (0: at the last step only)")
	fs.IntVar(&evalSize, "eval-size", 0, "size of the fixed evaluation subsets (0: the whole splits)")
	fs.IntVar(&spec.CheckpointEvery, "checkpoint-every", 0, "store a forward checkpoint every N steps")
	fs.StringVar(&spec.Fingerprint, "fingerprint", "", "any: remote workers of every fingerprint may compute the run (not bitwise); default: the daemon's only")
	fs.StringVar(&spec.Optimizer, "optimizer", "", "optimizer (torch.optim's): sgd, momentum, nesterov, adam, adamw")
	optFlags := []struct {
		name, usage string
		dst         **float64
		v           float64
	}{
		{name: "momentum", usage: "momentum factor of momentum and nesterov (default 0.9)", dst: &spec.Momentum},
		{name: "dampening", usage: "dampening of momentum (default 0)", dst: &spec.Dampening},
		{name: "beta1", usage: "Adam's β1 (default 0.9)", dst: &spec.Beta1},
		{name: "beta2", usage: "Adam's β2 (default 0.999)", dst: &spec.Beta2},
		{name: "eps", usage: "Adam's ε (default 1e-8)", dst: &spec.Eps},
		{name: "weight-decay", usage: "weight decay (default 0; adamw 0.01)", dst: &spec.WeightDecay},
	}
	for i := range optFlags {
		fs.Float64Var(&optFlags[i].v, optFlags[i].name, 0, optFlags[i].usage)
	}
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	// An explicit 0 is a value for these, not "the default": they are sent
	// as set (absent otherwise).
	if fs.Changed("seed") {
		spec.Seed = &seed
	}
	// Absent optimizer settings stay nil (the daemon's defaults apply).
	for _, f := range optFlags {
		if fs.Changed(f.name) {
			*f.dst = api.Ptr(f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
		dst  **int
	}{{"backward-from", backwardFrom, &spec.BackwardFrom}, {"eval-every", evalEvery, &spec.EvalEvery}, {"eval-size", evalSize, &spec.EvalSize}} {
		if fs.Changed(f.name) {
			if f.v < 0 {
				return usagef("run start: --%s %d: must not be negative", f.name, f.v)
			}
			*f.dst = api.Ptr(f.v)
		}
	}
	if fs.Changed("reset-at") {
		r, err := parseResets(resetAt)
		if err != nil {
			return err
		}
		spec.ResetAt = r
	}
	// For these zero means "the preset's value" on the wire, so an explicit
	// zero or a negative number cannot be what the user meant: say so here
	// rather than have it silently replaced by a default.
	for _, f := range []string{"batch", "steps", "window", "checkpoint-every", "reset-horizon"} {
		if fs.Changed(f) {
			if v, _ := fs.GetInt(f); v <= 0 {
				return usagef("run start: --%s %d: must be positive", f, v)
			}
		}
	}
	if fs.Changed("lr") && !(spec.LR > 0) {
		return usagef("run start: --lr %g: must be positive", spec.LR)
	}
	if err := oneOf("run start", "reset-from", spec.ResetFrom, "", "forward", "backward"); err != nil {
		return err
	}
	if err := oneOf("run start", "fingerprint", spec.Fingerprint, "", api.FingerprintAny); err != nil {
		return err
	}
	if err := oneOf("run start", "reset-policy", spec.ResetPolicy, "", "fixed", "improve"); err != nil {
		return err
	}
	st, err := e.client().CreateRun(e.ctx, spec)
	if err != nil {
		return err
	}
	if e.g.output == "table" {
		opt := ""
		if o := st.Spec.Optimizer; o != "" && o != "sgd" {
			opt = ", optimizer " + o
		}
		fmt.Fprintf(e.stdout, "started run %s: %s on %s, lr %g%s, batch %d, %d steps, window %d (%s)\n",
			st.Name, st.Spec.Model, st.Spec.Dataset, st.Spec.LR, opt, st.Spec.Batch, st.Steps, st.Window, st.Strategy)
		return nil
	}
	return writeStatuses(e, []api.RunStatus{st})
}

// parseResets reads --reset-at: steps, or "none" alone for an empty list
// (which clears a preset's resets; leaving the flag out keeps them).
func parseResets(vals []string) ([]int, error) {
	if len(vals) == 1 && vals[0] == "none" {
		return []int{}, nil
	}
	out := make([]int, 0, len(vals))
	for _, v := range vals {
		if v == "none" {
			return nil, usagef("run start: --reset-at none cannot be combined with steps")
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, usagef("run start: --reset-at %q: want a step number or none", v)
		}
		if n <= 0 {
			return nil, usagef("run start: --reset-at %d: must be a positive step", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// oneOf checks an enumerated flag value.
func oneOf(cmd, flag, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	list := ""
	for _, a := range allowed {
		if a != "" {
			if list != "" {
				list += " or "
			}
			list += a
		}
	}
	return usagef("%s: --%s %q: want %s", cmd, flag, v, list)
}
