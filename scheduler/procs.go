package scheduler

import "github.com/replay-sgd/replay/family"

// reserveWorkerProc is called by each worker goroutine for its lifetime: a
// worker of a family whose operators live in C calls (OpenBLAS) needs an
// idle P beside it, or the Go runtime keeps taking its P away
// (family.ProcReserver; nn.ReserveProc has the measurements). The first
// registered family with that capability decides; the forward trainers,
// evaluations and handlers keep the Ps GOMAXPROCS had. It returns the
// function that ends the reservation.
func (s *Scheduler) reserveWorkerProc() (release func()) {
	for _, f := range s.opts.Families {
		if r, ok := f.(family.ProcReserver); ok {
			return r.ReserveProc()
		}
	}
	return func() {}
}
