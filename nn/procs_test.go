package nn

import (
	"runtime"
	"testing"
)

// TestReserveProc checks the GOMAXPROCS arithmetic of ReserveProc: one more
// P per reservation held (OpenBLAS backend only), the previous value back
// when the last is released, a release that counts once, and a value set by
// someone else in between taken as the new base.
func TestReserveProc(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // an explicit setting would switch it off
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })
	step := 0
	if BLASBackend() == "openblas" {
		step = 1
	}
	want := func(what string, n int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("%s: GOMAXPROCS = %d, want %d", what, got, n)
		}
	}
	r1 := ReserveProc()
	want("one reservation", base+step)
	r2 := ReserveProc()
	want("two reservations", base+2*step)
	r2()
	r2() // a second call of the same release changes nothing
	want("one released twice", base+step)
	r1()
	want("all released", base)

	// Someone sets GOMAXPROCS while a reservation is held (testing's -cpu
	// does between benchmarks): their value is the base from then on, and
	// every reservation still held adds its P to it.
	r1 = ReserveProc()
	runtime.GOMAXPROCS(base + 5)
	r2 = ReserveProc()
	want("reserved on a changed base", base+5+2*step)
	r2()
	want("one released on a changed base", base+5+step)
	r1()
	want("all released on a changed base", base+5)
}

// TestReserveProcRespectsEnv: with GOMAXPROCS set by the user, ReserveProc
// leaves it alone.
func TestReserveProcRespectsEnv(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Setenv("GOMAXPROCS", "1")
	r := ReserveProc()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS set in the environment: ReserveProc changed it from %d to %d", base, got)
	}
	r()
}
