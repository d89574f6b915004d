package scheduler

import "github.com/replay-sgd/replay/nn"

// reserveWorkerProc is called by each worker goroutine for its lifetime:
// a worker spends nearly all its time inside OpenBLAS calls, and the Go
// runtime needs an idle P beside every goroutine in a C call, or it keeps
// taking the workers' Ps away (nn.ReserveProc has the measurements). The
// forward trainers, evaluations and handlers keep the Ps GOMAXPROCS had.
// It returns the function that ends the reservation.
func reserveWorkerProc() (release func()) { return nn.ReserveProc() }
