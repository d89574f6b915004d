package main

import (
	"encoding/json"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestE2EMemoWindow is defect 2 of issue 9 through the real binaries:
// `--strategy memo --window 16` left the anchor at 0 for 100 steps of the
// quadratic while status reported window 16. The anchor must move every 16
// steps, as with strategy window, and after a manual reset.
func TestE2EMemoWindow(t *testing.T) {
	d := startDaemon(t)
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "m", "--strategy", "memo", "--window", "16", "--steps", "100").ok(t, "run start")
	d.ctl(t, "wait", "--run", "m", "--timeout", "2m", "--interval", "100ms").ok(t, "wait")
	st := statusJSON(t, d, "m")
	if st.State != "done" || st.Strategy != "memo" || st.Window != 16 || st.Anchor.Step != 96 || st.Anchor.Segment != 6 || st.Anchor.From != "backward" {
		t.Fatalf("status after 100 steps of memo, window 16: %+v (want the anchor at 96, segment 6)", st)
	}
	checkAnchors := func(want func(n int) int) {
		t.Helper()
		out := d.ctl(t, "trajectory", "--run", "m", "--kind", "backward", "-o", "json").ok(t, "trajectory")
		var pts []api.Point
		if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != 100 {
			t.Fatalf("trajectory json: %v (%d points)", err, len(pts))
		}
		for _, p := range pts {
			if p.Anchor != want(p.Step) {
				t.Fatalf("backward step %d under anchor %d, want %d", p.Step, p.Anchor, want(p.Step))
			}
		}
	}
	checkAnchors(func(n int) int { return (n - 1) / 16 * 16 })

	// A manual reset behind the frontier: the anchor moves to 40, then
	// every 16 steps from there (56, 72, 88).
	d.ctl(t, "reset", "--run", "m", "--at", "40").ok(t, "reset")
	d.ctl(t, "wait", "--run", "m", "--timeout", "2m", "--interval", "100ms").ok(t, "wait after reset")
	st = statusJSON(t, d, "m")
	if st.State != "done" || st.Anchor.Step != 88 || st.Anchor.Segment != 10 {
		t.Fatalf("status after a reset at 40: %+v (want the anchor at 88, segment 10)", st)
	}
	checkAnchors(func(n int) int {
		if n <= 40 {
			return (n - 1) / 16 * 16
		}
		return 40 + (n-41)/16*16
	})
}
