package server

import (
	"math"

	"github.com/replay-sgd/replay/api"
)

// JSON has no NaN or ±Inf, but runs produce them. Points are written by
// api.AppendPointJSON (non-finite values as null, read back as NaN); a
// status's non-finite floats are made JSON-safe here.

// finiteStatus returns st with every non-finite float made JSON-safe: the
// optional losses become nil, the rates 0 (unknown).
func finiteStatus(st api.RunStatus) api.RunStatus {
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	if st.ForwardLoss != nil && !finite(*st.ForwardLoss) {
		st.ForwardLoss = nil
	}
	if st.BackwardLoss != nil && !finite(*st.BackwardLoss) {
		st.BackwardLoss = nil
	}
	if !finite(st.OpsPerSec) {
		st.OpsPerSec = 0
	}
	if !finite(st.ETASeconds) {
		st.ETASeconds = 0
	}
	if !finite(st.Spec.LR) {
		st.Spec.LR = 0
	}
	return st
}

func finiteStatuses(sts []api.RunStatus) []api.RunStatus {
	out := make([]api.RunStatus, len(sts))
	for i, st := range sts {
		out[i] = finiteStatus(st)
	}
	return out
}
