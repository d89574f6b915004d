package report

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestMarkdownOptimizer: a run's settings name its optimizer and every
// optimizer setting its spec carries (an Adam run's report must not read
// as an SGD run's); a spec without an optimizer is shown as before.
func TestMarkdownOptimizer(t *testing.T) {
	write := func(st api.RunStatus) string {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		writeRun(bw, &Result{Run: Run{Status: st}})
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	st := status("adam", 100, nil)
	st.Spec.Optimizer, st.Spec.Beta1, st.Spec.Beta2, st.Spec.Eps, st.Spec.WeightDecay = "adam", api.Ptr(0.9), api.Ptr(0.999), api.Ptr(1e-8), api.Ptr(0.0)
	got := write(st)
	for _, want := range []string{"lr `0.1`, optimizer `adam`, beta1 `0.9`, beta2 `0.999`, eps `1e-08`, weight decay `0`, batch"} {
		if !strings.Contains(got, want) {
			t.Errorf("adam run: want %q in:\n%s", want, got)
		}
	}
	if got := write(status("sgd", 100, nil)); strings.Contains(got, "optimizer") || strings.Contains(got, "momentum") {
		t.Errorf("run without an optimizer names one:\n%s", got)
	}
}
