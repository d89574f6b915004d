package extmodel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is how a model's child process is started: argv (argv[0] looked
// up in PATH) and extra environment entries ("K=V", added to the daemon's).
type Command struct {
	Argv []string
	Env  []string
}

// stderrLines is how many of a child's last stderr lines an error quotes.
const stderrLines = 20

// maxLine is the longest stderr line kept (the rest is cut): a child that
// writes a megabyte without a newline fills neither the log nor memory.
const maxLine = 2048

// child is one running child process speaking the protocol. One request at
// a time: its user (the pool) owns it between get and put.
type child struct {
	name    string // the registered model name (log prefix)
	cmd     *exec.Cmd
	stdin   *os.File
	stdout  *bufio.Reader
	stdoutF *os.File
	nextID  int64
	exited  chan struct{} // closed once the process was reaped
	tail    *ring
	// broken is set once the child must not be used again (killed).
	broken bool
	// cancelGrace is how long a cancelled request's reply is awaited
	// before the child is killed (Options.CancelGrace).
	cancelGrace time.Duration
}

// ring keeps the last lines of a child's stderr.
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int
}

func (r *ring) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < stderrLines {
		r.lines = append(r.lines, s)
		return
	}
	r.lines[r.next] = s
	r.next = (r.next + 1) % stderrLines
}

// String returns the kept lines, oldest first, joined by " | " (errors are
// one line).
func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	out = append(out, r.lines[:r.next]...)
	return strings.Join(out, " | ")
}

// startChild starts cmd. Its stdin and stdout are the protocol's pipes;
// every stderr line goes to log prefixed "[name] " and into the ring. The
// child is its own process group, so that a kill reaches what a shell
// started.
func startChild(name string, c Command, log *slog.Logger, cancelGrace time.Duration) (*child, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("extmodel: empty command")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	// The child's ends belong to the child now (or to nobody).
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start model %s: %w", name, err)
	}
	ch := &child{name: name, cmd: cmd, stdin: inW, stdoutF: outR, stdout: bufio.NewReaderSize(outR, 1<<16),
		exited: make(chan struct{}), tail: &ring{}, cancelGrace: cancelGrace}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer errR.Close()
		ch.copyStderr(errR, log)
	}()
	go func() {
		cmd.Wait()
		// The process is gone; its stderr ends once every process of its
		// group has closed it (a kill reaches them all). Bounded, in case
		// a grandchild escaped the group.
		select {
		case <-stderrDone:
		case <-time.After(time.Second):
		}
		close(ch.exited)
	}()
	return ch, nil
}

func (c *child) copyStderr(r io.Reader, log *slog.Logger) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || err == nil {
			s := string(line)
			for isPrefix { // cut a long line, drop the rest of it
				_, isPrefix, err = br.ReadLine()
				if err != nil {
					break
				}
			}
			c.tail.add(s)
			log.Info("[" + c.name + "] " + s)
		}
		if err != nil {
			return
		}
	}
}

// kill SIGKILLs the child's process group and waits until it is reaped.
func (c *child) kill() {
	c.broken = true
	if c.cmd.Process != nil {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
	c.stdin.Close()
	<-c.exited
	c.stdoutF.Close()
}

// stderrTail returns the child's last stderr lines, for errors.
func (c *child) stderrTail() string {
	if s := c.tail.String(); s != "" {
		return "; its last stderr lines: " + s
	}
	return "; it wrote nothing on stderr"
}

// pending is a request in flight: its reply (or error) arrives on done.
type pending struct {
	id   int64
	op   string
	done chan ioResult
}

type ioResult struct {
	frame []byte
	err   error
}

// send starts request req (its head filled in here) in a goroutine that
// writes it and reads one frame back.
func (c *child) send(op string, req any, setHead func(head)) (*pending, error) {
	c.nextID++
	setHead(head{Op: op, ID: c.nextID})
	hint := 0
	if s, ok := req.(interface{ size() int }); ok {
		hint = s.size()
	}
	b, err := encodeMsg(req, hint)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", op, err)
	}
	p := &pending{id: c.nextID, op: op, done: make(chan ioResult, 1)}
	go func() {
		if err := writeFrame(c.stdin, b); err != nil {
			p.done <- ioResult{err: fmt.Errorf("%w: write %s: %w", ErrExited, op, err)}
			return
		}
		f, err := readFrame(c.stdout, MaxFrame)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w before replying to %s: %w", ErrExited, op, err)
		}
		p.done <- ioResult{frame: f, err: err}
	}()
	return p, nil
}

// finish decodes the reply r of p into rep: garbage, a wrong id or an I/O
// error are errors of the child (it must be killed); a refusal is
// ErrRefused (the child stays usable).
//
// A *checked reply is decoded into its inner reply, and its check (which
// copies the reply's vectors out) runs only when copyOut: a reply that
// arrives after its caller gave up must not write into the caller's memory.
func (c *child) finish(p *pending, r ioResult, rep reply, copyOut bool) (healthy bool, err error) {
	if r.err != nil {
		return false, r.err
	}
	var check func() error
	if ck, ok := rep.(*checked); ok {
		rep, check = ck.reply, ck.check
	}
	if err := decodeMsg(r.frame, rep); err != nil {
		return false, fmt.Errorf("reply to %s: %w", p.op, err)
	}
	h := rep.head()
	if h.ID == nil || *h.ID != p.id {
		got := "none"
		if h.ID != nil {
			got = fmt.Sprint(*h.ID)
		}
		return false, fmt.Errorf("%w: reply to %s has id %s, want %d", ErrGarbage, p.op, got, p.id)
	}
	if h.OK == nil {
		return false, fmt.Errorf("%w: reply to %s without \"ok\"", ErrGarbage, p.op)
	}
	if !*h.OK {
		msg := strings.TrimSpace(h.Error)
		if msg == "" {
			msg = "no reason given"
		}
		return true, fmt.Errorf("%w: %s: %s", ErrRefused, p.op, oneLine(msg))
	}
	if check != nil && copyOut {
		if err := check(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// call sends req and waits for its reply into rep, for at most timeout.
// A child that fails (dies, hangs, answers garbage or the wrong id) is
// killed, and the error quotes its last stderr lines. When ctx ends first
// the call returns ctx's error at once and the reply is awaited in the
// background (up to cancelGrace, then the child is killed): release is then called with whether
// the child is still usable, and the caller must not touch it meanwhile.
// Without cancellation release is not called: the returned healthy says
// it.
func (c *child) call(ctx context.Context, op string, req any, setHead func(head), rep reply, timeout time.Duration, release func(*child, bool)) (healthy bool, err error) {
	p, err := c.send(op, req, setHead)
	if err != nil {
		return true, err // nothing was sent
	}
	t := time.NewTimer(timeout)
	select {
	case r := <-p.done:
		t.Stop()
		healthy, err = c.finish(p, r, rep, true)
	case <-t.C:
		healthy, err = false, fmt.Errorf("%w: %s after %v", ErrTimeout, op, timeout)
	case <-ctx.Done():
		t.Stop()
		go func() {
			// A late reply within the grace keeps a warm child (a
			// short chain); a long one (a chain of a big model) would
			// hold its slot for minutes: killed, a fresh child is
			// cheaper.
			g := time.NewTimer(min(timeout, c.cancelGrace))
			defer g.Stop()
			select {
			case r := <-p.done:
				ok, _ := c.finish(p, r, rep, false)
				if !ok {
					c.kill()
				}
				release(c, ok)
			case <-g.C:
				c.kill()
				release(c, false)
			}
		}()
		return false, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if !healthy {
		c.kill()
		return false, fmt.Errorf("model %s: %w%s", c.name, err, c.stderrTail())
	}
	if err != nil {
		return true, fmt.Errorf("model %s: %w", c.name, err)
	}
	return true, nil
}

// shutdown asks the child to exit and waits up to grace for it, then kills
// it.
func (c *child) shutdown(grace time.Duration) {
	if c.broken {
		return
	}
	var rep shutdownReply
	req := &shutdownRequest{}
	ok, _ := c.call(context.Background(), "shutdown", req, func(h head) { req.head = h }, &rep, grace, nil)
	if ok {
		c.stdin.Close()
		select {
		case <-c.exited:
			c.stdoutF.Close()
			c.broken = true
			return
		case <-time.After(grace):
		}
	}
	if !c.broken {
		c.kill()
	}
}

// oneLine replaces line breaks so that an error stays one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}
