package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// BenchmarkTrajectory measures streaming a 100k-point trajectory through the
// handler (encoding and buffering; the fake backend costs next to nothing).
func BenchmarkTrajectory(b *testing.B) {
	f := newFake()
	f.Create(api.RunSpec{Name: "a", Steps: 1})
	const n = 100_000
	for i := range n {
		f.points = append(f.points, api.Point{Kind: "backward", Step: i, Loss: 1 / float64(i+1),
			TestLoss: 0.5, TestAcc: 0.75, ParamNorm: 12.5, StepDist: 1e-3, Anchor: i / 256 * 256, Segment: i / 256})
	}
	h := New(f, Options{})
	req := httptest.NewRequest(http.MethodGet, "/v1/runs/a/trajectory", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "points/s")
}

// discardWriter is a ResponseWriter that drops the body.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return io.Discard.Write(p)
}
