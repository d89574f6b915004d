package server

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/replay-sgd/replay/api"
)

// JSON has no NaN or ±Inf, but runs produce them: a diverged run's last
// loss, the accuracy of a regression model (NaN by nn's convention), an ETA
// that is not known yet. The API writes them as null, which decodes as the
// zero value into a float64 and as nil into a *float64. Everything else is
// written with the shortest representation that parses back to the same
// float64, so values round-trip bitwise.

// appendPoint appends p as one JSON object (the api.Point field names) and a
// newline to b.
func appendPoint(b []byte, p api.Point) []byte {
	b = append(b, `{"kind":`...)
	b = appendString(b, p.Kind)
	b = append(b, `,"step":`...)
	b = strconv.AppendInt(b, int64(p.Step), 10)
	b = append(b, `,"loss":`...)
	b = appendFloat(b, p.Loss)
	b = append(b, `,"test_loss":`...)
	b = appendFloat(b, p.TestLoss)
	b = append(b, `,"test_acc":`...)
	b = appendFloat(b, p.TestAcc)
	b = append(b, `,"param_norm":`...)
	b = appendFloat(b, p.ParamNorm)
	b = append(b, `,"step_dist":`...)
	b = appendFloat(b, p.StepDist)
	b = append(b, `,"anchor":`...)
	b = strconv.AppendInt(b, int64(p.Anchor), 10)
	b = append(b, `,"segment":`...)
	b = strconv.AppendInt(b, int64(p.Segment), 10)
	return append(b, "}\n"...)
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendString appends s as a JSON string (encoding/json's escaping).
// Plain ASCII, the only kind of string a Point carries, is copied as is.
func appendString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(b, `""`...)
	}
	return append(b, q...)
}

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
