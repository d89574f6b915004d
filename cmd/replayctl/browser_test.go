//go:build browser

// The browser test: a real headless Chromium (Debian's `chromium`, which
// `make setup` installs) driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4, so no
// WebSocket library is needed), against the real daemon and the real
// `replayctl ui` binaries. Run it with `make test-browser`, or
//
//	go test -tags browser -run TestBrowser -count=1 ./cmd/replayctl/ [-screenshot out.png]
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var screenshotPath = flag.String("screenshot", filepath.Join(os.TempDir(), "replay-ui.png"), "where TestBrowser saves its screenshot")

// cdp is a DevTools protocol client over Chromium's debugging pipe.
type cdp struct {
	w    io.Writer
	mu   sync.Mutex
	next int
	wait map[int]chan cdpMsg
	logs []string // console messages and exceptions of the page
}

type cdpMsg struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

func (c *cdp) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.wait {
				close(ch)
				delete(c.wait, id)
			}
			c.mu.Unlock()
			return
		}
		var m cdpMsg
		if json.Unmarshal(b[:len(b)-1], &m) != nil {
			continue
		}
		c.mu.Lock()
		switch {
		case m.ID != 0:
			if ch, ok := c.wait[m.ID]; ok {
				ch <- m
				delete(c.wait, m.ID)
			}
		case m.Method == "Runtime.exceptionThrown" || m.Method == "Runtime.consoleAPICalled":
			c.logs = append(c.logs, m.Method+" "+string(m.Params))
		}
		c.mu.Unlock()
	}
}

// call sends one command (to the page's session when session is not
// empty) and returns its result.
func (c *cdp) call(ctx context.Context, session, method string, params any) (json.RawMessage, error) {
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpMsg, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	p, _ := json.Marshal(params)
	b, _ := json.Marshal(struct {
		ID        int             `json:"id"`
		Method    string          `json:"method"`
		Params    json.RawMessage `json:"params"`
		SessionID string          `json:"sessionId,omitempty"`
	}{id, method, p, session})
	if _, err := c.w.Write(append(b, 0)); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%s: chromium closed the pipe", method)
		}
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is one tab.
type page struct {
	t       *testing.T
	c       *cdp
	session string
}

// eval evaluates expr in the page and decodes its value into out.
func (p *page) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.c.call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	if err != nil {
		return err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// viewState is what the page exposes as window.replayView.drawn plus a few
// fields of its state.
type viewState struct {
	Run          string                  `json:"run"`
	Forward      int                     `json:"forward"`  // buckets drawn
	Backward     int                     `json:"backward"` // buckets drawn
	ForwardLast  int                     `json:"forwardLast"`
	BackwardLast int                     `json:"backwardLast"`
	Anchors      []int                   `json:"anchors"`     // anchor lines drawn
	DataAnchors  []int                   `json:"dataAnchors"` // anchors of the backward points fetched
	Width        int                     `json:"width"`       // steps per bucket
	View         *struct{ From, To int } `json:"view"`
	Msg          string                  `json:"msg"`
	Events       int                     `json:"events"`
	Fetches      int                     `json:"fetches"`
	Window       *struct {
		From, To int
		Kind     string
	} `json:"window"` // the window band drawn
	Pending  int    `json:"pending"`  // backward steps drawn as pending
	Smooth   string `json:"smooth"`   // the smooth parameter of the data held
	Smoothed bool   `json:"smoothed"` // the data held has smoothed values
}

const stateJS = `(() => { const S = window.replayView; if (!S) return null; return Object.assign({}, S.drawn, {
  run: S.cur, width: S.width, view: S.view, events: S.events, fetches: S.fetches, smooth: S.smooth,
  smoothed: !!(S.data.forward && S.data.forward.buckets.length && S.data.forward.buckets[0].loss.length > 4),
  dataAnchors: S.data.backward ? S.data.backward.anchors.map(a => a.step) : [],
  msg: document.getElementById('msg').textContent }); })()`

// waitFor polls the page's state until ok holds or the deadline passes.
// Polling a condition with a deadline is the synchronisation; the interval
// only bounds the cost.
func (p *page) waitFor(what string, d time.Duration, ok func(viewState) bool) viewState {
	p.t.Helper()
	deadline := time.Now().Add(d)
	var st viewState
	var err error
	for {
		st = viewState{}
		err = p.eval(stateJS, &st)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			view := ""
			if st.View != nil {
				view = fmt.Sprintf("%+v", *st.View)
			}
			p.t.Fatalf("page: %s: not within %v; last state %+v view %s (err %v); page log:\n%s", what, d, st, view, err, strings.Join(p.c.logs, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startChromium starts a headless Chromium with a fresh profile and returns
// a client attached to its one tab.
func startChromium(t *testing.T) *page {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH (make setup installs Debian's chromium): %v", err)
	}
	profile := t.TempDir()
	toChrome, ourW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourR, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+profile,
		"--remote-debugging-pipe", "--window-size=1280,1150", "--hide-scrollbars", "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	var logb strings.Builder
	cmd.Stderr = &syncWriter{w: &logb}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers die with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	fromChrome.Close()
	c := &cdp{w: ourW, wait: map[int]chan cdpMsg{}}
	go c.read(ourR)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.call(ctx, "", "Browser.close", nil)
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		ourW.Close()
		ourR.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var targets struct {
		TargetInfos []struct{ TargetID, Type string } `json:"targetInfos"`
	}
	var id string
	for id == "" {
		res, err := c.call(ctx, "", "Target.getTargets", nil)
		if err != nil {
			t.Fatalf("chromium: %v; its log:\n%s", err, logb.String())
		}
		json.Unmarshal(res, &targets)
		for _, ti := range targets.TargetInfos {
			if ti.Type == "page" {
				id = ti.TargetID
			}
		}
		if id == "" {
			time.Sleep(100 * time.Millisecond) // the first tab is still opening
		}
	}
	res, err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": id, "flatten": true})
	if err != nil {
		t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	json.Unmarshal(res, &att)
	p := &page{t: t, c: c, session: att.SessionID}
	for _, m := range []string{"Page.enable", "Runtime.enable"} {
		if _, err := c.call(ctx, p.session, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// startUI runs the replayctl ui binary against d and returns the link it
// printed.
func startUI(t *testing.T, d *daemon) string {
	t.Helper()
	cmd := exec.Command(bin.replayctl, "ui", "--addr", d.addr, "--port", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &syncWriter{w: &errb}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("replayctl ui did not stop on SIGINT; stderr:\n%s", errb.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://127.0.0.1:") || !strings.Contains(line, "/?token=") {
		t.Fatalf("replayctl ui printed %q (%v); stderr:\n%s", line, err, errb.String())
	}
	return strings.TrimSpace(line)
}

// TestBrowser opens the page for a live regression run through replayctl
// ui, sees both curves grow, zooms, presses reset at a step and sees the new
// anchor drawn and the backward curve recomputed from it.
func TestBrowser(t *testing.T) {
	d := startDaemon(t, "--window", "64")
	d.ctl(t, "run", "start", "--preset", "regression", "--name", "reg", "--steps", "30000", "--eval-every", "10").ok(t, "run start")
	link := startUI(t, d)
	p := startChromium(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.c.call(ctx, p.session, "Page.navigate", map[string]any{"url": link}); err != nil {
		t.Fatal(err)
	}
	// The token was exchanged for the cookie, the link's token is gone
	// from the address bar, and the only run is shown.
	first := p.waitFor("both curves drawn", 60*time.Second, func(s viewState) bool {
		return s.Run == "reg" && s.ForwardLast > 0 && s.BackwardLast > 0
	})
	var href string
	if err := p.eval("location.href", &href); err != nil || strings.Contains(href, "token=") || !strings.Contains(href, "/ui/") {
		t.Fatalf("page at %q (%v), want /ui/ without the token", href, err)
	}
	t.Logf("first draw: %+v", first)
	// A run started while the page is open appears in the list through
	// replayctl ui's proxy too (the daemon-wide stream is not buffered).
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "q-late", "--steps", "50").ok(t, "run start q-late")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rows []string
		err := p.eval(`[...document.querySelectorAll('#runs tr[data-run]')].map(r => r.dataset.run)`, &rows)
		if err == nil && strings.Join(rows, ",") == "q-late,reg" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs list %v (%v), want q-late,reg without a reload", rows, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	grown := p.waitFor("both curves grow", 120*time.Second, func(s viewState) bool {
		return s.ForwardLast > first.ForwardLast && s.BackwardLast > first.BackwardLast && s.Events > first.Events
	})
	// The backward pass is W = 64 times the forward's cost: steps behind
	// the forward one are drawn pending, and the window band is the
	// current anchor's 64 steps.
	p.waitFor("pending backward steps and the window drawn", 60*time.Second, func(s viewState) bool {
		return s.Pending > 0 && s.Window != nil && s.Window.Kind == "window" && s.Window.To-s.Window.From == 64
	})
	t.Logf("grown: %+v", grown)

	// Zoom by dragging the mouse over the first ~2% of the training-loss
	// chart (the run is 30000 steps: ~600 steps): the page asks for finer
	// buckets, one step each (2 px from the left edge are ~50 steps).
	var box struct{ X, Y, W float64 }
	if err := p.eval(`(() => { const r = document.querySelector('canvas[data-measure=loss]').getBoundingClientRect(); return {x: r.left, y: r.top + r.height / 2, w: r.width}; })()`, &box); err != nil {
		t.Fatal(err)
	}
	x0, x1 := box.X+56+2, box.X+56+(box.W-66)*0.02 // PAD.l, PAD.l+PAD.r in app.js
	for _, ev := range []struct {
		typ string
		x   float64
	}{{"mouseMoved", x0}, {"mousePressed", x0}, {"mouseMoved", (x0 + x1) / 2}, {"mouseMoved", x1}, {"mouseReleased", x1}} {
		if _, err := p.c.call(ctx, p.session, "Input.dispatchMouseEvent", map[string]any{
			"type": ev.typ, "x": ev.x, "y": box.Y, "button": "left", "buttons": 1, "clickCount": 1}); err != nil {
			t.Fatal(err)
		}
	}
	zoomed := p.waitFor("zoomed by a drag to the first steps at full resolution", 30*time.Second, func(s viewState) bool {
		return s.View != nil && s.View.From < 100 && s.View.To > 400 && s.View.To < 800 && s.Width == 1 && s.Forward >= 150
	})
	t.Logf("zoomed: %+v %+v", zoomed, *zoomed.View)
	// A double click zooms out.
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		if _, err := p.c.call(ctx, p.session, "Input.dispatchMouseEvent", map[string]any{
			"type": typ, "x": x1, "y": box.Y, "button": "left", "buttons": 1, "clickCount": 2}); err != nil {
			t.Fatal(err)
		}
	}
	full := p.waitFor("zoomed out", 30*time.Second, func(s viewState) bool { return s.View == nil && s.Width > 1 })

	// Reset at a step the forward pass has passed, from the forward iterate,
	// by pressing the button.
	at := max(full.BackwardLast+10, full.ForwardLast-20)
	if err := p.eval(fmt.Sprintf(`document.getElementById('reset-at').value = %d;
		document.getElementById('reset-from').value = 'forward';
		document.getElementById('reset-btn').click()`, at), nil); err != nil {
		t.Fatal(err)
	}
	has := func(xs []int, x int) bool {
		for _, v := range xs {
			if v == x {
				return true
			}
		}
		return false
	}
	reset := p.waitFor(fmt.Sprintf("anchor at %d drawn and backward points computed from it", at), 120*time.Second, func(s viewState) bool {
		return has(s.Anchors, at) && has(s.DataAnchors, at) && s.Msg == "" &&
			s.Window != nil && s.Window.From >= at && s.Window.To-s.Window.From == 64 && has(s.Anchors, s.Window.From)
	})
	t.Logf("after reset at %d: %+v", at, reset)

	// A view that shows the curves (the run is 30000 steps long) for the
	// screenshot.
	to := reset.ForwardLast + 50
	if err := p.eval(fmt.Sprintf(`zoom({from: 1, to: %d})`, to), nil); err != nil {
		t.Fatal(err)
	}
	p.waitFor("zoomed for the screenshot", 30*time.Second, func(s viewState) bool {
		return s.View != nil && s.View.To == to && s.Width == 1 && s.Forward >= reset.ForwardLast && has(s.Anchors, at)
	})
	// With smoothing on (the server's debiased EMA over the faint raw
	// curve), as the README shows it.
	if err := p.eval(`document.getElementById('smooth-k').value = 0.9;
		document.getElementById('smooth').value = 'ema';
		document.getElementById('smooth').dispatchEvent(new Event('change'))`, nil); err != nil {
		t.Fatal(err)
	}
	p.waitFor("smoothed for the screenshot", 30*time.Second, func(s viewState) bool {
		return s.Smooth == "ema:0.9" && s.Smoothed && s.View != nil && s.View.To == to && s.Forward >= reset.ForwardLast
	})

	var shot struct {
		Data string `json:"data"`
	}
	res, err := p.c.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(res, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if err := os.WriteFile(*screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved to %s", *screenshotPath)
	p.c.mu.Lock()
	logs := strings.Join(p.c.logs, "\n")
	p.c.mu.Unlock()
	if strings.Contains(logs, "exceptionThrown") {
		t.Errorf("the page threw:\n%s", logs)
	}
}

// TestBrowserDirectToken opens the page replayd serves itself on a loopback
// TCP listener with --auth-token: the token comes in the URL fragment (never
// sent to a server), the page sends it as a bearer token on every request,
// the event stream included, and removes it from the address bar.
func TestBrowserDirectToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, "--listen", addr, "--auth-token", "s3cret", "--window", "16")
	runCtl(t, "--token", "s3cret", "--addr", addr, "run", "start", "--preset", "quadratic", "--name", "q", "--steps", "400").ok(t, "run start")
	_ = d
	p := startChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.c.call(ctx, p.session, "Page.navigate", map[string]any{"url": "http://" + addr + "/#token=s3cret"}); err != nil {
		t.Fatal(err)
	}
	// The quadratic run finishes quickly: the page draws it whole, from
	// the series and the stream's snapshot, all with the token.
	st := p.waitFor("the run drawn to its last step", 60*time.Second, func(s viewState) bool {
		return s.Run == "q" && s.ForwardLast == 400 && s.BackwardLast == 400 && s.Events > 0
	})
	// Done: nothing pending; the window band is the last anchor's,
	// (384, 400].
	if st.Pending != 0 || st.Window == nil || st.Window.From != 384 || st.Window.To != 400 {
		t.Errorf("done run drawn with %d pending steps and window %+v, want none and 384..400", st.Pending, st.Window)
	}
	t.Logf("drawn: %+v", st)
	var href string
	if err := p.eval("location.href", &href); err != nil || strings.Contains(href, "s3cret") {
		t.Fatalf("page at %q (%v): the token is still in the address bar", href, err)
	}
	// Smoothing, computed by the server over every point: choose a
	// debiased EMA of weight 0.5 in the controls; the page refetches with
	// smooth=ema:0.5 and draws the server's values. The run's 400 steps
	// are one bucket each, so the page's raw values are the whole series
	// and an EMA over them, computed here in the page, must match.
	if err := p.eval(`document.getElementById('smooth-k').value = 0.5;
		document.getElementById('smooth').value = 'ema';
		document.getElementById('smooth').dispatchEvent(new Event('change'))`, nil); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the smoothed series fetched", 30*time.Second, func(s viewState) bool { return s.Smooth == "ema:0.5" && s.ForwardLast == 400 && s.Smoothed })
	var sm struct {
		N       int
		MaxDiff float64
		Hash    string
	}
	if err := p.eval(`(() => { const bs = S.data.forward.buckets; let m = 0, w = 0, d = 0, n = 0;
		for (const b of bs) { const v = b.loss[2]; if (v === null || b.n !== 1) continue;
		  m = 0.5 * m + 0.5 * v; w = 0.5 * w + 0.5; d = Math.max(d, Math.abs(b.loss[6] - m / w)); n++; }
		return {n, maxDiff: d, hash: location.hash}; })()`, &sm); err != nil {
		t.Fatal(err)
	}
	if sm.N < 300 || sm.MaxDiff > 1e-12 || !strings.Contains(sm.Hash, "smooth=ema%3A0.5") {
		t.Errorf("smoothed loss: %d points, max difference %g from an EMA over the raw series, hash %q; want ≥ 300 points, ≤ 1e-12, smooth=ema:0.5 in the link", sm.N, sm.MaxDiff, sm.Hash)
	}

	// A run started with replayctl while the page is open appears in the
	// list, without a reload (the daemon-wide stream), with its optimizer
	// (none given: sgd); deleted, it goes.
	rows := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var rows []string
			err := p.eval(`[...document.querySelectorAll('#runs tr[data-run]')].map(r => r.dataset.run + '/' + r.querySelector('td.optim').textContent)`, &rows)
			if err == nil && strings.Join(rows, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("runs list %v (%v), want %s without a reload", rows, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	runCtl(t, "--token", "s3cret", "--addr", addr, "run", "start", "--preset", "quadratic", "--name", "q2", "--steps", "50").ok(t, "run start q2")
	rows("q/sgd,q2/sgd")
	// Shown, then deleted elsewhere: the view goes with it.
	if err := p.eval(`document.querySelector('#runs tr[data-run=q2]').click()`, nil); err != nil {
		t.Fatal(err)
	}
	p.waitFor("q2 shown", 30*time.Second, func(s viewState) bool { return s.Run == "q2" })
	runCtl(t, "--token", "s3cret", "--addr", addr, "delete", "q2").ok(t, "delete q2")
	rows("q/sgd")
	p.waitFor("the deleted run's view closed", 30*time.Second, func(s viewState) bool { return s.Run == "" })
	var hidden bool
	if err := p.eval(`document.getElementById('run-view').hidden`, &hidden); err != nil || !hidden {
		t.Errorf("run view hidden %v (%v) after its run was deleted, want hidden", hidden, err)
	}

	// The data needs the token: the same request from the page without
	// the Authorization header is refused.
	var code int
	if err := p.eval(`fetch('/v1/runs').then(r => r.status)`, &code); err != nil || code != 401 {
		t.Fatalf("GET /v1/runs from the page without the token: %d (%v), want 401", code, err)
	}
}

// TestBrowserWaiting: a run whose backward jobs wait for a remote worker
// (a daemon with --remote-workers --workers 0 and none connected) shows
// why under its row, from the status and the stream alone; paused by
// replayctl, the line goes with the next event, without a reload.
func TestBrowserWaiting(t *testing.T) {
	d := startDaemon(t, "--window", "16", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--workers", "0")
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "w", "--steps", "400").ok(t, "run start")
	link := startUI(t, d)
	p := startChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.c.call(ctx, p.session, "Page.navigate", map[string]any{"url": link}); err != nil {
		t.Fatal(err)
	}
	waitText := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var text string
			err := p.eval(`[...document.querySelectorAll('#runs td.waiting')].map(td => td.textContent).join('\n')`, &text)
			if err == nil && ok(text) {
				return text
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the runs table's waiting cells read %q (%v)", what, text, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := waitText("the waiting line shown", func(s string) bool { return strings.HasPrefix(s, "backward waits: no remote worker connected") })
	t.Logf("shown: %q", got)
	d.ctl(t, "pause", "w").ok(t, "pause")
	waitText("the waiting line gone once paused", func(s string) bool { return s == "" })
}
