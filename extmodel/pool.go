package extmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pool is the bounded set of children of one registered model: at most max
// at once, started lazily, reused. A request takes a child (get), makes one
// round trip and hands it back (put) or, when the child failed, lets it go
// (drop): the next attempt starts a fresh one. Safe for concurrent use.
type pool struct {
	name  string
	cmd   Command
	log   *slog.Logger
	opts  Options
	hello Hello // the registration's, which every fresh child must repeat

	mu struct {
		sync.Mutex
		idle   []*child
		n      int // children alive (idle or taken)
		closed bool
		// started counts the children ever started (tests: a fresh
		// child per retry; no child per request).
		started int
		pids    []int // of every child started (tests: no orphans)
		live    map[*child]struct{}
	}
	freed chan struct{} // a slot or an idle child became available
	// requests counts the round trips made (tests: one per backward job).
	requests atomic.Int64
}

func newPool(name string, cmd Command, opts Options) *pool {
	return &pool{name: name, cmd: cmd, log: opts.Logger, opts: opts, freed: make(chan struct{}, 1)}
}

func (p *pool) signal() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// get returns an idle child, or a fresh one (hello checked against the
// registration's) while fewer than max are alive, or waits for one.
func (p *pool) get(ctx context.Context) (*child, error) {
	for {
		p.mu.Lock()
		if p.mu.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("model %s: %w", p.name, ErrClosed)
		}
		if k := len(p.mu.idle); k > 0 {
			c := p.mu.idle[k-1]
			p.mu.idle = p.mu.idle[:k-1]
			p.mu.Unlock()
			select {
			case <-c.exited:
				// It died while idle (killed from outside): no request's
				// failure, and no attempt of this one, or a few dead
				// idle children would use up every attempt without a
				// fresh child ever being tried.
				p.log.Warn("external model child died while idle; starting a fresh one", "model", p.name, "pid", c.cmd.Process.Pid)
				p.drop(c)
				continue
			default:
			}
			return c, nil
		}
		if p.mu.n < p.opts.MaxChildren {
			p.mu.n++
			p.mu.started++
			p.mu.Unlock()
			c, _, err := p.start(ctx)
			if err != nil {
				p.release()
				return nil, err
			}
			return c, nil
		}
		p.mu.Unlock()
		select {
		case <-p.freed:
		case <-ctx.Done():
			return nil, fmt.Errorf("model %s: wait for a child: %w", p.name, ctx.Err())
		}
	}
}

// start starts a child and says hello within the start deadline. It
// returns the hello; when the pool has a registration hello, a child that
// announces another state layout is refused (the model file changed under
// a running daemon).
func (p *pool) start(ctx context.Context) (*child, Hello, error) {
	c, err := startChild(p.name, p.cmd, p.log, p.opts.CancelGrace)
	if err != nil {
		return nil, Hello{}, err
	}
	p.mu.Lock()
	p.mu.pids = append(p.mu.pids, c.cmd.Process.Pid)
	if p.mu.live == nil {
		p.mu.live = map[*child]struct{}{}
	}
	p.mu.live[c] = struct{}{}
	p.mu.Unlock()
	var rep helloReply
	req := &helloRequest{Version: Version}
	healthy, err := c.call(ctx, "hello", req, func(h head) { req.head = h }, &rep, p.opts.StartTimeout, func(c *child, _ bool) {
		c.kill() // the hello of a cancelled start: nobody takes this child
		p.forget(c)
	})
	if err == nil && rep.Version != Version {
		err = fmt.Errorf("model %s: the child speaks protocol version %d, this replayd version %d: %w", p.name, rep.Version, Version, ErrVersion)
	}
	if err == nil {
		err = checkHello(rep.Hello)
	}
	if err == nil && p.hello.Tensors != nil && !sameLayout(p.hello, rep.Hello) {
		err = fmt.Errorf("model %s: a fresh child announced another state layout or data set than at registration: %w", p.name, ErrGarbage)
	}
	// The same layout is not enough: the runs' data hash stands for the
	// registration's model file, data and runtime (DataHash), and a child
	// of an edited model file computes other numbers.
	if err == nil && p.hello.Tensors != nil {
		if k := fingerprintChange(p.hello.Fingerprint, rep.Hello.Fingerprint); k != "" {
			err = fmt.Errorf("model %s: a fresh child announced another fingerprint than at registration (%s): the model file, its data or its runtime changed on disk; restart to register it again: %w",
				p.name, k, ErrChanged)
		}
	}
	if err != nil {
		// A cancelled hello's child is killed in the background.
		if cancelled := !healthy && ctx.Err() != nil && errors.Is(err, ctx.Err()); !cancelled {
			if !c.broken {
				c.kill()
			}
			p.forget(c)
		}
		return nil, Hello{}, err
	}
	return c, rep.Hello, nil
}

// put hands back a child after a successful (or refused) round trip.
func (p *pool) put(c *child) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		c.shutdown(p.opts.ShutdownGrace)
		p.forget(c)
		p.release()
		return
	}
	p.mu.idle = append(p.mu.idle, c)
	p.mu.Unlock()
	p.signal()
}

// drop lets a failed (killed) child go: its slot is free.
func (p *pool) drop(c *child) {
	if !c.broken {
		c.kill()
	}
	p.forget(c)
	p.release()
}

func (p *pool) forget(c *child) {
	p.mu.Lock()
	delete(p.mu.live, c)
	p.mu.Unlock()
}

func (p *pool) release() {
	p.mu.Lock()
	p.mu.n--
	p.mu.Unlock()
	p.signal()
}

// roundTrip makes one request on some child, retrying on a fresh child
// after a failure of the child (death, deadline, garbage) up to
// opts.Attempts times in a row. A refusal (ErrRefused) and ctx's end are
// not retried.
func (p *pool) roundTrip(ctx context.Context, op string, timeout time.Duration, build func() (req any, setHead func(head), rep reply)) error {
	var last error
	for attempt := 1; attempt <= p.opts.Attempts; attempt++ {
		c, err := p.get(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return err
			}
			last = err // a fresh child that did not start counts as a failure
			p.log.Warn("external model child failed to start", "model", p.name, "attempt", attempt, "err", err)
			continue
		}
		p.requests.Add(1)
		req, setHead, rep := build()
		healthy, err := c.call(ctx, op, req, setHead, rep, timeout, func(c *child, ok bool) {
			if ok {
				p.put(c)
			} else {
				p.drop(c)
			}
		})
		if ctx.Err() != nil && err != nil {
			return err // the child is released in the background
		}
		if healthy {
			p.put(c)
			return err // nil, or a refusal: not retried
		}
		p.drop(c)
		last = err
		p.log.Warn("external model request failed; retrying on a fresh child", "model", p.name, "op", op, "attempt", attempt, "err", err)
	}
	return fmt.Errorf("model %s: %s failed %d times in a row: %w", p.name, op, p.opts.Attempts, last)
}

// close shuts every idle child down (shutdown, then SIGKILL after the
// grace); children in use are shut down when handed back, and those still
// busy after the grace are killed: no child outlives close.
func (p *pool) close() {
	p.mu.Lock()
	p.mu.closed = true
	idle := p.mu.idle
	p.mu.idle = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.shutdown(p.opts.ShutdownGrace)
			p.forget(c)
			p.release()
		}()
	}
	wg.Wait()
	p.signal()
	deadline := time.NewTimer(p.opts.ShutdownGrace)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		n := len(p.mu.live)
		busy := make([]*child, 0, n)
		for c := range p.mu.live {
			busy = append(busy, c)
		}
		p.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-p.freed:
			continue
		case <-deadline.C:
		}
		// Killing a busy child fails its request (the scheduler has
		// stopped: nobody waits for it); its caller then drops it.
		for _, c := range busy {
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
		return
	}
}

// checkHello checks a hello's layout: named tensors of non-negative shapes,
// non-negative sizes.
func checkHello(h Hello) error {
	if len(h.Tensors) == 0 {
		return fmt.Errorf("%w: hello without tensors", ErrGarbage)
	}
	seen := map[string]bool{}
	for _, t := range h.Tensors {
		if t.Name == "" || seen[t.Name] {
			return fmt.Errorf("%w: hello: tensor name %q empty or repeated", ErrGarbage, t.Name)
		}
		seen[t.Name] = true
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("%w: hello: tensor %s has shape %v", ErrGarbage, t.Name, t.Shape)
			}
		}
	}
	if h.Train < 1 || h.Test < 0 || h.Classes < 0 {
		return fmt.Errorf("%w: hello: train %d, test %d, classes %d", ErrGarbage, h.Train, h.Test, h.Classes)
	}
	return nil
}

// sameLayout reports whether two hellos describe the same state and data.
func sameLayout(a, b Hello) bool {
	if len(a.Tensors) != len(b.Tensors) || a.Train != b.Train || a.Test != b.Test || a.Classes != b.Classes {
		return false
	}
	for i := range a.Tensors {
		x, y := a.Tensors[i], b.Tensors[i]
		if x.Name != y.Name || x.Param != y.Param || len(x.Shape) != len(y.Shape) {
			return false
		}
		for j := range x.Shape {
			if x.Shape[j] != y.Shape[j] {
				return false
			}
		}
	}
	return true
}
