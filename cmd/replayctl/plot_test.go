package main

import (
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// near reports whether c is within tol of want in every channel.
func near(c color.Color, want color.RGBA, tol int) bool {
	r, g, b, _ := c.RGBA()
	d := func(x uint32, y uint8) bool { return int(x>>8)-int(y) <= tol && int(y)-int(x>>8) <= tol }
	return d(r, want.R) && d(g, want.G) && d(b, want.B)
}

func decodePNG(t *testing.T, p string) image.Image {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// colourCounts counts white pixels and pixels near the curve and anchor
// colours.
func colourCounts(img image.Image) (white, fwd, bwd, anchor int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			switch {
			case near(c, color.RGBA{255, 255, 255, 255}, 0):
				white++
			case near(c, forwardColor, 12):
				fwd++
			case near(c, backwardColor, 12):
				bwd++
			case near(c, anchorColor, 6):
				anchor++
			}
		}
	}
	return
}

func TestPlot(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	p := filepath.Join(t.TempDir(), "fm.png")
	out, _, err := f.cli("plot", "--out", p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "400 forward and 300 backward points, 3 anchors") {
		t.Errorf("output %q", out)
	}
	if os.Getenv("REPLAYCTL_KEEP_PLOT") != "" {
		data, _ := os.ReadFile(p)
		os.WriteFile(os.Getenv("REPLAYCTL_KEEP_PLOT"), data, 0o644)
	}
	img := decodePNG(t, p)
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 800 {
		t.Errorf("size %v", b)
	}
	white, fwd, bwd, anchor := colourCounts(img)
	total := 1200 * 800
	// Not blank: a white background with both curves (two panels each)
	// and the anchor lines drawn in their colours.
	if white == total || white < total/2 {
		t.Errorf("white pixels %d of %d", white, total)
	}
	if fwd < 2000 || bwd < 2000 || anchor < 500 {
		t.Errorf("curve pixels: forward %d, backward %d, anchors %d", fwd, bwd, anchor)
	}
	// The trajectory was thinned to about --max-points per curve.
	if f.lastRequest() != "GET /v1/runs/fm/trajectory?every=3&kind=both" {
		t.Errorf("request %s", f.lastRequest())
	}
}

func TestPlotSizeThinningAndRegression(t *testing.T) {
	st := sampleRun("reg")
	st.Steps, st.ForwardStep, st.BackwardStep = 100000, 100000, 0
	f := newFake(t, st)
	f.points = func(string) []api.Point {
		// A regression: no accuracy (NaN), so the lower panel shows test loss.
		ps := make([]api.Point, 0, 200)
		for k := 500; k <= 100000; k += 500 {
			ps = append(ps, api.Point{Kind: "forward", Step: k, Loss: 1 / float64(k), TestLoss: 2 / float64(k), TestAcc: math.NaN()})
		}
		return ps
	}
	p := filepath.Join(t.TempDir(), "reg.png")
	if _, _, err := f.cli("plot", "--out", p, "--width", "640", "--height", "480", "--max-points", "200"); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest(); got != "GET /v1/runs/reg/trajectory?every=500&kind=both" {
		t.Errorf("request %s", got)
	}
	img := decodePNG(t, p)
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 480 {
		t.Errorf("size %v", b)
	}
	if _, fwd, _, _ := colourCounts(img); fwd < 500 {
		t.Errorf("forward pixels %d", fwd)
	}
}

func TestPlotErrors(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	dir := t.TempDir()
	for _, args := range [][]string{{}, {"--out", filepath.Join(dir, "a.png"), "--width", "10"}, {"--out", filepath.Join(dir, "a.png"), "--max-points", "1"}} {
		_, _, err := f.cli(append([]string{"plot"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
		oneLine(t, err)
	}
	_, _, err := f.cli("plot", "--out", filepath.Join(dir, "no", "a.png"))
	oneLine(t, err)
	if !strings.HasPrefix(err.Error(), "plot: cannot write ") {
		t.Errorf("unwritable: %v", err)
	}
	_, _, err = f.cli("plot", "--run", "nope", "--out", filepath.Join(dir, "a.png"))
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed plots left files: %v", ents)
	}
}

// TestPlotTitleWindow: the window is named for every strategy it applies
// to — memo moves its anchors as window does — and not for full.
func TestPlotTitleWindow(t *testing.T) {
	for _, c := range []struct {
		strategy string
		window   bool
	}{{"window", true}, {"memo", true}, {"sliding", true}, {"full", false}} {
		got := plotTitle(api.RunStatus{Name: "r", Strategy: c.strategy, Window: 16})
		if strings.Contains(got, "window 16") != c.window {
			t.Errorf("%s: title %q (window shown: want %v)", c.strategy, got, c.window)
		}
	}
}
