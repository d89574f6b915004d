package api

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
)

// The one JSON codec of Point, used by the daemon's trajectory stream, the
// client and replayctl's -o json. JSON has no NaN or ±Inf, but runs produce
// them (a regression model's accuracy is NaN by nn's convention, a diverged
// loss is Inf or NaN): a non-finite value is written as null and null (or
// an absent field) is read back as NaN, never as a silent 0. Every finite
// value is written in the shortest form that parses back to the same
// float64, so finite values round-trip bit for bit. ±Inf comes back as
// NaN: JSON cannot tell them apart from NaN without leaving the format.

// AppendPointJSON appends p as one JSON object (no newline) to b.
func AppendPointJSON(b []byte, p Point) []byte {
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
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendPointJSON.
func (p Point) MarshalJSON() ([]byte, error) {
	return AppendPointJSON(nil, p), nil
}

// UnmarshalJSON implements json.Unmarshaler: null becomes NaN.
func (p *Point) UnmarshalJSON(b []byte) error {
	var w wirePoint
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*p = w.point()
	return nil
}

// decodePointLine decodes one line of a trajectory stream: a Point, or the
// daemon's in-band report of a failure after the stream had started
// ({"error": "..."}), returned as a *StatusError.
func decodePointLine(line []byte) (Point, error) {
	var w wirePoint
	if err := json.Unmarshal(line, &w); err != nil {
		return Point{}, err
	}
	if w.Error != "" {
		return Point{}, &StatusError{Code: http.StatusInternalServerError, Message: w.Error}
	}
	return w.point(), nil
}

// wirePoint is a Point as it travels: pointers tell null from 0.
type wirePoint struct {
	Kind      string   `json:"kind"`
	Step      int      `json:"step"`
	Loss      *float64 `json:"loss"`
	TestLoss  *float64 `json:"test_loss"`
	TestAcc   *float64 `json:"test_acc"`
	ParamNorm *float64 `json:"param_norm"`
	StepDist  *float64 `json:"step_dist"`
	Anchor    int      `json:"anchor"`
	Segment   int      `json:"segment"`
	Error     string   `json:"error"` // an in-band failure after the stream started
}

func (w *wirePoint) point() Point {
	f := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	return Point{Kind: w.Kind, Step: w.Step, Loss: f(w.Loss), TestLoss: f(w.TestLoss), TestAcc: f(w.TestAcc),
		ParamNorm: f(w.ParamNorm), StepDist: f(w.StepDist), Anchor: w.Anchor, Segment: w.Segment}
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendString appends s as a JSON string with encoding/json's escaping.
// Plain ASCII, the only kind of string a Point carries, is copied as is
// (the stream writes one Point per step: no allocation per point).
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
