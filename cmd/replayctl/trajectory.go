package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"math"
	"strconv"

	"github.com/replay-sgd/replay/api"
)

var trajectoryCmd = command{
	name:     "trajectory",
	synopsis: "[--run RUN] [--kind forward|backward|both] [--from N] [--to N] [--every N]",
	summary:  "print the forward and/or backward trajectory (losses, accuracy, norms, anchors) step by step",
	example:  "replayctl trajectory --kind backward --every 10 -o csv > backward.csv",
	run:      runTrajectory,
}

// trajectoryColumns is the CSV header; scripts rely on these names and
// their order (more columns may be added at the end).
var trajectoryColumns = []string{"kind", "step", "loss", "test_loss", "test_acc", "param_norm", "step_dist", "anchor", "segment"}

func runTrajectory(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name string
	var q api.TrajectoryQuery
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.StringVar(&q.Kind, "kind", "both", "forward, backward or both")
	fs.IntVar(&q.From, "from", 0, "first step")
	fs.IntVar(&q.To, "to", 0, "last step (default: the latest)")
	fs.IntVar(&q.Every, "every", 1, "keep one step in N")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if err := oneOf("trajectory", "kind", q.Kind, "forward", "backward", "both"); err != nil {
		return err
	}
	if q.From < 0 || q.To < 0 {
		return usagef("trajectory: --from and --to must not be negative")
	}
	if fs.Changed("to") && q.To < q.From {
		return usagef("trajectory: --to %d is before --from %d", q.To, q.From)
	}
	if q.Every < 1 {
		return usagef("trajectory: --every %d: must be at least 1", q.Every)
	}
	cl := e.client()
	name, err := e.resolveRun(cl, name)
	if err != nil {
		return err
	}
	// A bounded buffer: rows leave as the daemon streams them, so memory
	// does not grow with the trajectory. It is flushed before returning,
	// also on error, so what was received is not lost.
	w := bufio.NewWriterSize(e.stdout, 32<<10)
	tw := newPointWriter(w, e.g.output)
	err = cl.Trajectory(e.ctx, name, q, tw.write)
	if err == nil {
		err = tw.close()
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// pointWriter formats a stream of points as a table, CSV (encoding/csv) or
// a JSON array (api.AppendPointJSON, the API's own codec: NaN as null).
type pointWriter struct {
	w      *bufio.Writer
	csv    *csv.Writer // shares w's buffer (csv.NewWriter reuses a large enough *bufio.Writer)
	format string
	n      int
	buf    []byte
	rec    []string
}

func newPointWriter(w *bufio.Writer, format string) *pointWriter {
	return &pointWriter{w: w, csv: csv.NewWriter(w), format: format}
}

// csvFloat is the CSV form of a value: the shortest form that parses back
// to the same float64; NaN prints as NaN, which pandas and numpy read.
func csvFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func (p *pointWriter) write(pt api.Point) error {
	switch p.format {
	case "csv":
		if p.n == 0 {
			if err := p.csv.Write(trajectoryColumns); err != nil {
				return err
			}
		}
		p.rec = append(p.rec[:0], pt.Kind, strconv.Itoa(pt.Step), csvFloat(pt.Loss), csvFloat(pt.TestLoss),
			csvFloat(pt.TestAcc), csvFloat(pt.ParamNorm), csvFloat(pt.StepDist), strconv.Itoa(pt.Anchor), strconv.Itoa(pt.Segment))
		p.n++
		return p.csv.Write(p.rec)
	case "json":
		b := p.buf[:0]
		if p.n == 0 {
			b = append(b, "[\n  "...)
		} else {
			b = append(b, ",\n  "...)
		}
		p.buf = api.AppendPointJSON(b, pt)
	default:
		b := p.buf[:0]
		if p.n == 0 {
			b = fmt.Appendf(b, "%-8s %8s %12s %12s %8s %12s %12s %8s\n",
				"KIND", "STEP", "LOSS", "TEST LOSS", "TEST ACC", "PARAM NORM", "STEP DIST", "ANCHOR")
		}
		p.buf = fmt.Appendf(b, "%-8s %8d %12s %12s %8s %12s %12s %8d\n", pt.Kind, pt.Step,
			g6(pt.Loss), g6(pt.TestLoss), acc(pt.TestAcc), g6(pt.ParamNorm), g6(pt.StepDist), pt.Anchor)
	}
	p.n++
	_, err := p.w.Write(p.buf)
	return err
}

// close ends the output: the JSON array's bracket, the CSV header of an
// empty trajectory.
func (p *pointWriter) close() error {
	var err error
	switch p.format {
	case "json":
		if p.n == 0 {
			_, err = p.w.WriteString("[]\n")
		} else {
			_, err = p.w.WriteString("\n]\n")
		}
	case "csv":
		if p.n == 0 {
			err = p.csv.Write(trajectoryColumns)
		}
		p.csv.Flush()
		if err == nil {
			err = p.csv.Error()
		}
	default:
		if p.n == 0 {
			_, err = p.w.WriteString("no points in this range\n")
		}
	}
	return err
}

func g6(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

func acc(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}
