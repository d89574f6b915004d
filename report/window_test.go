package report

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestMarkdownWindow: the run's configuration names the window for every
// strategy it applies to — memo moves its anchors as window does — and not
// for full.
func TestMarkdownWindow(t *testing.T) {
	for _, c := range []struct {
		strategy string
		window   bool
	}{{"window", true}, {"memo", true}, {"full", false}} {
		st := status("r", 100, nil)
		st.Strategy, st.Window = c.strategy, 16
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		writeRun(bw, &Result{Run: Run{Status: st}})
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "window `16`"); got != c.window {
			t.Errorf("%s: window shown %v, want %v:\n%s", c.strategy, got, c.window, buf.String())
		}
	}
}
