package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/replay-sgd/replay/api"
)

var plotCmd = command{
	name:     "plot",
	synopsis: "[--run RUN] --out FILE.png [--width PX] [--height PX] [--max-points N]",
	summary:  "plot forward and backward training loss and test accuracy per step, anchors marked (PNG)",
	example:  "replayctl plot --run fmnist --out fmnist.png",
	run:      runPlot,
}

// Colours: forward and backward as in the paper's figures (blue, orange),
// anchors grey so they never compete with the curves.
var (
	forwardColor  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	backwardColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	anchorColor   = color.RGBA{R: 0x88, G: 0x88, B: 0x88, A: 0xff}
)

func runPlot(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name, out string
	var width, height, maxPoints int
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.StringVar(&out, "out", "", "PNG file to write (required)")
	fs.IntVar(&width, "width", 1200, "image width in pixels")
	fs.IntVar(&height, "height", 800, "image height in pixels")
	fs.IntVar(&maxPoints, "max-points", 2000, "at most about this many steps per curve (the trajectory is thinned)")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if out == "" {
		return usagef("plot: --out FILE.png is required (see replayctl plot --help)")
	}
	if width < 200 || height < 150 || width > 20000 || height > 20000 {
		return usagef("plot: --width %d --height %d: want between 200×150 and 20000×20000 pixels", width, height)
	}
	if maxPoints < 2 {
		return usagef("plot: --max-points %d: must be at least 2", maxPoints)
	}
	dst, err := createAtomic("plot", out, e.stdout)
	if err != nil {
		return err
	}
	defer dst.abort()

	cl := e.client()
	if name, err = e.resolveRun(cl, name); err != nil {
		return err
	}
	st, err := cl.Status(e.ctx, name)
	if err != nil {
		return err
	}
	every := max(1, (max(st.ForwardStep, st.Steps)+maxPoints-1)/maxPoints)
	var tr trajectoryData
	if err := cl.Trajectory(e.ctx, name, api.TrajectoryQuery{Kind: "both", Every: every}, tr.add); err != nil {
		return err
	}
	if err := renderPlot(dst, st, &tr, width, height); err != nil {
		return err
	}
	if err := dst.commit(); err != nil {
		return err
	}
	if out != "-" && e.g.output == "table" {
		_, err = fmt.Fprintf(e.stdout, "wrote %s: run %s, %d forward and %d backward points, %d anchors\n",
			out, name, len(tr.fwdLoss), len(tr.bwdLoss), len(tr.anchors))
	}
	return err
}

// trajectoryData collects the curves of one plot; non-finite values (a
// regression's accuracy, a diverged loss) are left out, as plotter refuses
// them.
type trajectoryData struct {
	fwdLoss, bwdLoss, fwdAcc, bwdAcc, fwdTest, bwdTest plotter.XYs
	anchors                                            map[int]bool
}

func (t *trajectoryData) add(p api.Point) error {
	put := func(dst *plotter.XYs, v float64) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			*dst = append(*dst, plotter.XY{X: float64(p.Step), Y: v})
		}
	}
	switch p.Kind {
	case "forward":
		put(&t.fwdLoss, p.Loss)
		put(&t.fwdAcc, p.TestAcc)
		put(&t.fwdTest, p.TestLoss)
	case "backward":
		put(&t.bwdLoss, p.Loss)
		put(&t.bwdAcc, p.TestAcc)
		put(&t.bwdTest, p.TestLoss)
		if p.Anchor > 0 {
			if t.anchors == nil {
				t.anchors = map[int]bool{}
			}
			t.anchors[p.Anchor] = true
		}
	}
	return nil
}

// renderPlot draws two panels sharing the step axis, training loss on top
// and test accuracy (test loss when the task has no accuracy) below, and
// writes them as a PNG to w.
func renderPlot(w io.Writer, st api.RunStatus, tr *trajectoryData, width, height int) error {
	anchors := make([]float64, 0, len(tr.anchors))
	for a := range tr.anchors {
		anchors = append(anchors, float64(a))
	}
	sort.Float64s(anchors)

	top := plot.New()
	top.Title.Text = plotTitle(st)
	top.Title.TextStyle.Font.Size = vg.Points(14)
	top.Y.Label.Text = "training loss"
	bottom := plot.New()
	bottom.X.Label.Text = "step"
	lowerF, lowerB := tr.fwdAcc, tr.bwdAcc
	bottom.Y.Label.Text = "test accuracy"
	accuracy := len(lowerF)+len(lowerB) > 0
	if !accuracy {
		lowerF, lowerB = tr.fwdTest, tr.bwdTest
		bottom.Y.Label.Text = "test loss"
	}
	for _, p := range []*plot.Plot{top, bottom} {
		p.Add(plotter.NewGrid())
		p.X.Label.TextStyle.Font.Size = vg.Points(12)
		p.Y.Label.TextStyle.Font.Size = vg.Points(12)
		p.X.Tick.Label.Font.Size = vg.Points(10)
		p.Y.Tick.Label.Font.Size = vg.Points(10)
		// Losses fall and accuracy rises: put each legend where its curves
		// are not (top right over a loss, bottom right under an accuracy).
		p.Legend.Top = p == top || !accuracy
		p.Legend.TextStyle.Font.Size = vg.Points(11)
		if len(anchors) > 0 {
			p.Add(&anchorLines{steps: anchors})
		}
	}
	if err := addCurves(top, tr.fwdLoss, tr.bwdLoss); err != nil {
		return err
	}
	if err := addCurves(bottom, lowerF, lowerB); err != nil {
		return err
	}
	if len(anchors) > 0 {
		top.Legend.Add(fmt.Sprintf("anchors (%d)", len(anchors)), &anchorLines{})
	}
	// One step axis for both panels.
	xmin, xmax := 0.0, math.Max(top.X.Max, bottom.X.Max) // steps count from θ_0
	if !(xmax > xmin) {
		xmin, xmax = 0, math.Max(1, float64(st.Steps))
	}
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min, p.X.Max = xmin, xmax
		if !(p.Y.Max > p.Y.Min) { // no data: a readable empty frame
			p.Y.Min, p.Y.Max = 0, 1
		}
	}

	const dpi = 100
	img := vgimg.NewWith(
		vgimg.UseWH(vg.Length(width)*vg.Inch/dpi, vg.Length(height)*vg.Inch/dpi),
		vgimg.UseDPI(dpi),
		vgimg.UseBackgroundColor(color.White),
	)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("plot: encode PNG: %w", err)
	}
	return nil
}

// addCurves adds the forward and backward lines (those with data).
func addCurves(p *plot.Plot, fwd, bwd plotter.XYs) error {
	for _, c := range []struct {
		label string
		xys   plotter.XYs
		col   color.Color
	}{{"forward", fwd, forwardColor}, {"backward", bwd, backwardColor}} {
		if len(c.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(c.xys)
		if err != nil {
			return fmt.Errorf("plot: %s curve: %w", c.label, err)
		}
		l.Color = c.col
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(c.label, l)
	}
	return nil
}

func plotTitle(st api.RunStatus) string {
	s := st.Spec
	t := fmt.Sprintf("%s — %s on %s, lr %g, batch %d", st.Name, s.Model, s.Dataset, s.LR, s.Batch)
	switch st.Strategy {
	case "full":
		// No periodic reset: the window does not apply (memo moves its
		// anchors as window does, so its window is shown).
		t += ", strategy " + st.Strategy
	case "":
	default:
		t += fmt.Sprintf(", strategy %s, window %d", st.Strategy, st.Window)
	}
	return t
}

// anchorLines marks anchor steps with dashed vertical lines over the whole
// height of the panel. It has no data range of its own, so it never
// stretches the axes.
type anchorLines struct{ steps []float64 }

func (a *anchorLines) style() draw.LineStyle {
	return draw.LineStyle{Color: anchorColor, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}
}

// Plot implements plot.Plotter.
func (a *anchorLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	ls := a.style()
	for _, s := range a.steps {
		if s < p.X.Min || s > p.X.Max {
			continue
		}
		x := trX(s)
		c.StrokeLine2(ls, x, c.Min.Y, x, c.Max.Y)
	}
}

// Thumbnail implements plot.Thumbnailer for the legend.
func (a *anchorLines) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(a.style(), x, c.Min.Y, x, c.Max.Y)
}
