package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/extmodel"
	pyworker "github.com/replay-sgd/replay/python"
)

// extConfig is the external models of the command line (--torch-model,
// --model-cmd), registered at start only: an API request names a
// registered model, never a command.
type extConfig struct {
	torchModels []string // NAME=FILE
	modelCmds   []string // NAME=CMD
	python      string
	// startTimeout bounds a child's hello; stepTimeout is added to the
	// deadline of a request for each step of its chain.
	startTimeout, stepTimeout time.Duration
}

func addExtFlags(fs *pflag.FlagSet, c *extConfig) {
	fs.StringArrayVar(&c.torchModels, "torch-model", nil, "register the PyTorch model file FILE as model ext:NAME, run by the embedded Python worker (NAME=FILE; repeatable)")
	fs.StringArrayVar(&c.modelCmds, "model-cmd", nil, "register model ext:NAME served by CMD (run by /bin/sh -c), any program speaking the operator protocol of docs/protocol.md (NAME=CMD; repeatable)")
	fs.StringVar(&c.python, "python", "/usr/bin/python3", "the Python interpreter of --torch-model (Debian's, which sees python3-torch)")
	def := extmodel.DefaultOptions()
	fs.DurationVar(&c.startTimeout, "model-start-timeout", def.StartTimeout, "how long an external model's child may take to start and answer hello (importing torch, loading data)")
	fs.DurationVar(&c.stepTimeout, "model-step-timeout", def.StepTimeout, "how long one step of an external model may take: a request's deadline is a fixed part plus this per step of its chain (a child past it is killed and the request retried)")
}

// extModel is one model to register.
type extModel struct {
	name string
	cmd  extmodel.Command
	// file is --torch-model's (the worker is extracted only if any).
	file string
}

// models parses the flags into the models to register, reporting every
// problem: a NAME that is invalid or given twice, a missing FILE, an empty
// CMD.
func (c extConfig) models() ([]extModel, []error) {
	var out []extModel
	var errs []error
	if c.startTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--model-start-timeout %v: must be > 0", c.startTimeout))
	}
	if c.stepTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--model-step-timeout %v: must be > 0", c.stepTimeout))
	}
	seen := map[string]bool{}
	add := func(flag, arg string, mk func(name, val string) (extModel, error)) {
		name, val, ok := strings.Cut(arg, "=")
		switch {
		case !ok || val == "":
			errs = append(errs, fmt.Errorf("--%s %q: want NAME=%s", flag, arg, map[bool]string{true: "FILE", false: "CMD"}[flag == "torch-model"]))
			return
		case !extmodel.ValidName(name):
			errs = append(errs, fmt.Errorf("--%s %q: model name %q: want letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)", flag, arg, name))
			return
		case seen[name]:
			errs = append(errs, fmt.Errorf("--%s %q: model %s registered twice", flag, arg, name))
			return
		}
		seen[name] = true
		m, err := mk(name, val)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flag, arg, err))
			return
		}
		out = append(out, m)
	}
	for _, a := range c.torchModels {
		add("torch-model", a, func(name, file string) (extModel, error) {
			abs, err := filepath.Abs(file)
			if err != nil {
				return extModel{}, err
			}
			fi, err := os.Stat(abs)
			if err != nil {
				return extModel{}, err
			}
			if !fi.Mode().IsRegular() {
				return extModel{}, fmt.Errorf("%s: not a regular file", file)
			}
			return extModel{name: name, file: abs, cmd: extmodel.Command{Argv: []string{c.python, "-m", pyworker.Package, abs}}}, nil
		})
	}
	for _, a := range c.modelCmds {
		add("model-cmd", a, func(name, cmd string) (extModel, error) {
			return extModel{name: name, cmd: extmodel.Command{Argv: []string{"/bin/sh", "-c", cmd}}}, nil
		})
	}
	return out, errs
}

// startExtModels registers models (from extConfig.models) in a new
// family, each child started and its hello answered; without models the
// family is empty (it still explains which flag registers an ext: model).
// The caller closes the family after the scheduler stopped. maxChildren
// bounds each model's children (the workers, the trainer and a query).
func startExtModels(ctx context.Context, c extConfig, models []extModel, maxChildren int, log *slog.Logger) (*extmodel.Family, error) {
	pythonPath := ""
	for i, m := range models {
		if m.file == "" {
			continue
		}
		if pythonPath == "" {
			dir, err := pyworker.Extract("")
			if err != nil {
				return nil, err
			}
			pythonPath = dir
		}
		models[i].cmd.Env = []string{"PYTHONPATH=" + pythonPath}
	}
	opts := extmodel.DefaultOptions()
	opts.Logger = log
	opts.MaxChildren = maxChildren
	opts.StartTimeout, opts.StepTimeout = c.startTimeout, c.stepTimeout
	fam, err := extmodel.New(opts)
	if err != nil {
		return nil, err
	}
	for _, m := range models {
		if err := fam.Register(ctx, m.name, m.cmd); err != nil {
			fam.Close()
			return nil, err
		}
	}
	return fam, nil
}
