package nn

import (
	"os"
	"runtime"
	"sync"
)

// ReserveProc declares that the calling goroutine is about to apply
// operators back to back (a worker), and returns the function that ends the
// declaration; call it once, when the goroutine stops. With the OpenBLAS
// backend it raises GOMAXPROCS by one for as long as the reservation is
// held; with the pure-Go backend, or when the user set the GOMAXPROCS
// environment variable, it does nothing. It changes no result: only how
// the Go runtime schedules the threads that make the BLAS calls.
//
// Why: a goroutine inside a cgo call keeps its P. The runtime's monitor
// thread (sysmon) takes such a P away after 20 µs whenever no other P is
// idle, hands it to another thread that spins looking for work, finds
// none and goes back to sleep, and the goroutine must get a P back when its
// call returns. An operator is a dozen GEMMs of 50–500 µs, so with as many
// goroutines in OpenBLAS as there are Ps — the daemon's default, one worker
// per core on a machine with GOMAXPROCS = cores — this happens on almost
// every call of every worker: measured on two vCPUs, 11 voluntary and 11
// involuntary context switches per operator instead of 4 and 4, a sixth of
// the process's CPU time spent outside the workers' threads, and the
// second worker adding 1.3× instead of the 1.8× two processes reach. While
// one P stays idle, sysmon leaves a P in a C call alone (for up to 10 ms,
// far longer than any GEMM here), so one extra P per worker restores the
// scaling; pure-Go work is unaffected, since a P in a C call runs no Go
// code anyway.
func ReserveProc() (release func()) {
	if backendName != "openblas" || os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	procs.adjust(+1)
	var once sync.Once
	return func() { once.Do(func() { procs.adjust(-1) }) }
}

// procs is the process-wide count of reservations and the GOMAXPROCS they
// were made on top of.
var procs procReservations

type procReservations struct {
	mu   sync.Mutex
	held int // reservations outstanding
	base int // GOMAXPROCS without them
	set  int // the value last set here (base + held)
}

// adjust changes the number of reservations by d and sets GOMAXPROCS to
// base + held. If GOMAXPROCS is not what this code last set, someone else
// (the user, testing's -cpu) changed it: that value becomes the new base.
func (r *procReservations) adjust(d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := runtime.GOMAXPROCS(0); r.held == 0 || cur != r.set {
		r.base = cur
	}
	r.held = max(0, r.held+d)
	r.set = r.base + r.held
	if runtime.GOMAXPROCS(0) != r.set {
		runtime.GOMAXPROCS(r.set)
	}
}
