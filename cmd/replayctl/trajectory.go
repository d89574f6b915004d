package main

import (
	"bufio"
	"encoding/json"
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

// pointWriter formats a stream of points as a table, CSV or a JSON array.
type pointWriter struct {
	w      *bufio.Writer
	format string
	n      int
	buf    []byte
}

func newPointWriter(w *bufio.Writer, format string) *pointWriter {
	return &pointWriter{w: w, format: format}
}

func (p *pointWriter) write(pt api.Point) error {
	b := p.buf[:0]
	switch p.format {
	case "csv":
		if p.n == 0 {
			for i, c := range trajectoryColumns {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, c...)
			}
			b = append(b, '\n')
		}
		b = append(b, pt.Kind...)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(pt.Step), 10)
		for _, f := range []float64{pt.Loss, pt.TestLoss, pt.TestAcc, pt.ParamNorm, pt.StepDist} {
			b = append(b, ',')
			b = strconv.AppendFloat(b, f, 'g', -1, 64) // NaN prints as NaN, which pandas and numpy read
		}
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(pt.Anchor), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(pt.Segment), 10)
		b = append(b, '\n')
	case "json":
		if p.n == 0 {
			b = append(b, "[\n  "...)
		} else {
			b = append(b, ",\n  "...)
		}
		b = appendPointJSON(b, pt)
	default:
		if p.n == 0 {
			b = fmt.Appendf(b, "%-8s %8s %12s %12s %8s %12s %12s %8s\n",
				"KIND", "STEP", "LOSS", "TEST LOSS", "TEST ACC", "PARAM NORM", "STEP DIST", "ANCHOR")
		}
		b = fmt.Appendf(b, "%-8s %8d %12s %12s %8s %12s %12s %8d\n", pt.Kind, pt.Step,
			g6(pt.Loss), g6(pt.TestLoss), acc(pt.TestAcc), g6(pt.ParamNorm), g6(pt.StepDist), pt.Anchor)
	}
	p.n++
	p.buf = b
	_, err := p.w.Write(b)
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
			for i, c := range trajectoryColumns {
				if i > 0 {
					p.w.WriteByte(',')
				}
				p.w.WriteString(c)
			}
			_, err = p.w.WriteString("\n")
		}
	default:
		if p.n == 0 {
			_, err = p.w.WriteString("no points in this range\n")
		}
	}
	return err
}

// appendPointJSON writes pt with the API's field names; JSON has no NaN,
// so non-finite values are null, as the daemon sends them.
func appendPointJSON(b []byte, pt api.Point) []byte {
	b = append(b, `{"kind":`...)
	kind, _ := json.Marshal(pt.Kind) // a string always marshals
	b = append(b, kind...)
	b = append(b, `,"step":`...)
	b = strconv.AppendInt(b, int64(pt.Step), 10)
	for _, kv := range []struct {
		k string
		v float64
	}{{"loss", pt.Loss}, {"test_loss", pt.TestLoss}, {"test_acc", pt.TestAcc}, {"param_norm", pt.ParamNorm}, {"step_dist", pt.StepDist}} {
		b = append(b, `,"`...)
		b = append(b, kv.k...)
		b = append(b, `":`...)
		if math.IsNaN(kv.v) || math.IsInf(kv.v, 0) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, kv.v, 'g', -1, 64)
		}
	}
	b = append(b, `,"anchor":`...)
	b = strconv.AppendInt(b, int64(pt.Anchor), 10)
	b = append(b, `,"segment":`...)
	b = strconv.AppendInt(b, int64(pt.Segment), 10)
	return append(b, '}')
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
