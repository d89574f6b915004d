package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/replay-sgd/replay/export"
)

var exportCmd = command{
	name:     "export",
	synopsis: "[--run RUN] --step N --kind forward|backward [--with-state] --out FILE.safetensors\n       replayctl export [--run RUN] --batches --out FILE.npy",
	summary:  "export parameters at a step as safetensors (PyTorch nn.Sequential names) or the batch log as .npy int64 [steps, batch]",
	example: "replayctl export --step 0 --kind forward --out theta0.safetensors\n" +
		"replayctl export --step 5000 --kind backward --out back5000.safetensors\n" +
		"replayctl export --batches --out batches.npy\n" +
		"replayctl export --step 100 --kind backward --with-state --out state100.safetensors\n" +
		"# python: model.load_state_dict(safetensors.torch.load_file(\"back5000.safetensors\"))",
	run: runExport,
}

func runExport(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name, kind, out string
	var step int
	var batches bool
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.IntVar(&step, "step", 0, "step of the parameters (0 is the initial point)")
	fs.StringVar(&kind, "kind", "", "forward or backward trajectory")
	boolFlag(fs, &batches, "batches", "", "export the batch log instead of parameters")
	var withState bool
	boolFlag(fs, &withState, "with-state", "", "add the optimizer's state after θ (optim.state.<i>.momentum_buffer, .exp_avg, .exp_avg_sq, optim.step)")
	fs.StringVar(&out, "out", "", "output file (- for stdout)")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if out == "" {
		return usagef("export: --out FILE is required (see replayctl export --help)")
	}
	if batches {
		if fs.Changed("step") || fs.Changed("kind") || withState {
			return usagef("export: --batches exports the whole batch log; drop --step, --kind and --with-state")
		}
	} else {
		if !fs.Changed("step") || kind == "" {
			return usagef("export: --step N and --kind forward|backward are required (or --batches)")
		}
		if step < 0 {
			return usagef("export: --step %d: must not be negative", step)
		}
		if err := oneOf("export", "kind", kind, "forward", "backward"); err != nil {
			return err
		}
	}
	// Open the destination before asking the daemon, so an unwritable path
	// fails fast; the data goes to a temporary file renamed at the end.
	dst, err := createAtomic("export", out, e.stdout)
	if err != nil {
		return err
	}
	defer dst.abort()

	cl := e.client()
	if name, err = e.resolveRun(cl, name); err != nil {
		return err
	}
	var body io.ReadCloser
	if batches {
		body, err = cl.Batches(e.ctx, name)
	} else if withState {
		body, err = cl.StateParams(e.ctx, name, kind, step)
	} else {
		body, err = cl.Params(e.ctx, name, kind, step)
	}
	if err != nil {
		return err
	}
	defer body.Close()
	// Check the bytes while writing them: a truncated or garbled answer
	// must not become a file that PyTorch or NumPy chokes on later.
	pr, pw := io.Pipe()
	type summary struct {
		tensors []export.Tensor
		rows    int
		cols    int
		err     error
	}
	done := make(chan summary, 1)
	go func() {
		var s summary
		br := bufio.NewReader(pr)
		if batches {
			s.rows, s.cols, _, s.err = export.ReadNpyInt64(br)
		} else {
			s.tensors, s.err = export.ReadSafetensors(br)
		}
		io.Copy(io.Discard, br) // let the writer finish even on a parse error
		done <- s
	}()
	n, cerr := io.Copy(io.MultiWriter(dst, pw), body)
	pw.CloseWithError(cerr)
	s := <-done
	if cerr != nil {
		return fmt.Errorf("export: download from replayd: %w", cerr)
	}
	if s.err != nil {
		return fmt.Errorf("export: replayd sent a malformed file: %w", s.err)
	}
	if err := dst.commit(); err != nil {
		return err
	}

	switch e.g.output {
	case "json":
		type tensorInfo struct {
			Name  string `json:"name"`
			Shape []int  `json:"shape"`
		}
		res := struct {
			Run     string       `json:"run"`
			File    string       `json:"file"`
			Bytes   int64        `json:"bytes"`
			Kind    string       `json:"kind"`
			Step    *int         `json:"step,omitempty"`
			Shape   []int        `json:"shape,omitempty"`
			Tensors []tensorInfo `json:"tensors,omitempty"`
		}{Run: name, File: out, Bytes: n, Kind: kind}
		if batches {
			res.Kind, res.Shape = "batches", []int{s.rows, s.cols}
		} else {
			res.Step = &step
			for _, t := range s.tensors {
				res.Tensors = append(res.Tensors, tensorInfo{t.Name, t.Shape})
			}
		}
		return writeJSON(e.stdout, res)
	case "csv":
		k, st := kind, itoa(step)
		if batches {
			k, st = "batches", ""
		}
		return writeCSV(e.stdout, []string{"run", "file", "bytes", "kind", "step"}, []string{name, out, strconv.FormatInt(n, 10), k, st})
	}
	msg := e.stdout
	if out == "-" {
		msg = e.stderr // stdout carries the file
	}
	if batches {
		_, err = fmt.Fprintf(msg, "wrote %s: batch log of run %s, int64 [%d, %d] (%d bytes)\n", out, name, s.rows, s.cols, n)
	} else {
		_, err = fmt.Fprintf(msg, "wrote %s: %s parameters of run %s at step %d, %d tensors (%d bytes)\n",
			out, kind, name, step, len(s.tensors), n)
	}
	return err
}

// atomicFile writes to a temporary file next to path and renames it over
// path on commit; abort removes it. "-" writes to stdout directly.
type atomicFile struct {
	cmd       string // for messages
	f         *os.File
	stdout    io.Writer // for "-"
	path      string
	committed bool
}

func createAtomic(cmd, path string, stdout io.Writer) (*atomicFile, error) {
	if path == "-" {
		return &atomicFile{cmd: cmd, stdout: stdout, path: path}, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: cannot write %s: is a directory", cmd, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: cannot write %s: %w", cmd, path, err)
	}
	return &atomicFile{cmd: cmd, f: f, path: path}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) {
	if a.path == "-" {
		return a.stdout.Write(p)
	}
	return a.f.Write(p)
}

func (a *atomicFile) commit() error {
	if a.path == "-" {
		a.committed = true
		return nil
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("%s: write %s: %w", a.cmd, a.path, err)
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("%s: write %s: %w", a.cmd, a.path, err)
	}
	if err := os.Chmod(a.f.Name(), 0o644); err != nil {
		return fmt.Errorf("%s: write %s: %w", a.cmd, a.path, err)
	}
	if err := os.Rename(a.f.Name(), a.path); err != nil {
		return fmt.Errorf("%s: write %s: %w", a.cmd, a.path, err)
	}
	a.committed = true
	return nil
}

func (a *atomicFile) abort() {
	if a.committed || a.path == "-" {
		return
	}
	a.f.Close()
	os.Remove(a.f.Name())
}
