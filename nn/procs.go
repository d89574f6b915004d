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
// call returns. An operator is 17 GEMMs of 50–500 µs each, so with as many
// goroutines in OpenBLAS as there are Ps — the daemon's default, one worker
// per core on a machine with GOMAXPROCS = cores — this happens on a large
// share of the calls of every worker. Measured on two vCPUs with two
// goroutines applying the paper's operator: 10–12 voluntary and 10–12
// involuntary context switches per operator instead of about 4 and 4, an
// execution trace showing 3.4 lost Ps per operator instead of 0.7, 12–15%
// of the process's CPU time outside the two goroutines' threads instead of
// 7%; through the daemon, two workers ran 1.1–1.3× one where two processes
// reach 2×, and 1.6–1.8× with the reservation. While a P stays idle,
// sysmon leaves a P in a C call alone, so one extra P per worker is
// enough. It lets no more Go code run beside the workers than before: the
// P of a goroutine in C was handed to runnable Go code anyway, only after
// 20 µs and a thread switch. C threads calling the same sgemm scale as processes do, so
// OpenBLAS's own shared state is not a factor.
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
