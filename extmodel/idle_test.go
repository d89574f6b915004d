package extmodel

import (
	"context"
	"io"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/fakechild"
)

// TestDeadIdleChildren: children that die while idle in the pool (killed
// from outside: an operator, the OOM killer) cost the next request no
// attempt: it runs on a fresh child, even when there are as many dead
// idle children as attempts. (It used to take them in turn and fail the
// request "3 times in a row" without ever starting a fresh child; found
// by TestE2EExtKill's scenario in cmd/replayctl.)
func TestDeadIdleChildren(t *testing.T) {
	opts := testOptions(io.Discard)
	opts.MaxChildren, opts.Attempts = 3, 3
	f := newFamily(t, opts, fakeCmd(t, ""))
	m := openModel(t, f, family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2, Seed: 1})
	p := m.r.pool
	var cs []*child
	for range opts.MaxChildren {
		c, err := p.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		p.put(c)
	}
	for _, c := range cs {
		if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.exited
	}
	started := f.Models()[0].Started
	s := make([]float32, m.Dim())
	if err := m.Init(s); err != nil {
		t.Fatalf("init after every idle child was killed: %v", err)
	}
	if want := fakechild.Init(1); !equalBits(s[:len(want)], want) {
		t.Fatalf("init %v, want %v", s, want)
	}
	if info := f.Models()[0]; info.Started != started+1 || info.Children != 1 {
		t.Fatalf("%d children started, %d alive; want one fresh child (%d started before), alive alone", info.Started, info.Children, started)
	}
}
