package api

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// same reports whether a and b are equal field by field, floats bit for bit
// except that every NaN equals every NaN.
func same(a, b Point) bool {
	f := func(x, y float64) bool {
		return math.Float64bits(x) == math.Float64bits(y) || math.IsNaN(x) && math.IsNaN(y)
	}
	return a.Kind == b.Kind && a.Step == b.Step && a.Anchor == b.Anchor && a.Segment == b.Segment &&
		f(a.Loss, b.Loss) && f(a.TestLoss, b.TestLoss) && f(a.TestAcc, b.TestAcc) &&
		f(a.ParamNorm, b.ParamNorm) && f(a.StepDist, b.StepDist)
}

// Finite values round-trip bit for bit; NaN and ±Inf travel as null and
// come back as NaN, through json.Marshal/Unmarshal and the stream decoder.
func TestPointCodecRoundTrip(t *testing.T) {
	seed := uint64(20261202)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	special := []float64{0, math.Copysign(0, -1), 1e-300, 5e-324, math.MaxFloat64, math.Nextafter(1, 2), -math.Pi,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	pick := func() float64 {
		if rng.IntN(3) == 0 {
			return special[rng.IntN(len(special))]
		}
		return math.Float64frombits(rng.Uint64()) // any bit pattern, NaNs included
	}
	for i := range 2000 {
		p := Point{Kind: []string{"forward", "backward", `we"ird\`, "é<&>"}[i%4], Step: rng.IntN(1 << 30),
			Loss: pick(), TestLoss: pick(), TestAcc: pick(), ParamNorm: pick(), StepDist: pick(), Anchor: rng.IntN(1000), Segment: rng.IntN(9)}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal %+v: %v", p, err)
		}
		if string(b) != string(AppendPointJSON(nil, p)) {
			t.Fatalf("MarshalJSON and AppendPointJSON differ: %s vs %s", b, AppendPointJSON(nil, p))
		}
		var q Point
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		want := p
		for _, f := range []*float64{&want.Loss, &want.TestLoss, &want.TestAcc, &want.ParamNorm, &want.StepDist} {
			if math.IsInf(*f, 0) {
				*f = math.NaN()
			}
		}
		if !same(q, want) {
			t.Fatalf("round trip of %+v through %s gave %+v", p, b, q)
		}
		if r, err := decodePointLine(b); err != nil || !same(r, want) {
			t.Fatalf("stream decoder: %+v %v, want %+v", r, err, want)
		}
	}
}

// The wire form: the documented field names in order, null for non-finite
// values, finite ones in strconv's shortest 'g' form (valid JSON numbers).
func TestPointCodecWireForm(t *testing.T) {
	p := Point{Kind: "backward", Step: 7, Loss: 0.25, TestLoss: math.NaN(), TestAcc: math.Inf(-1), ParamNorm: 1e21, StepDist: 1e-7, Anchor: 4, Segment: 1}
	const want = `{"kind":"backward","step":7,"loss":0.25,"test_loss":null,"test_acc":null,"param_norm":1e+21,"step_dist":1e-07,"anchor":4,"segment":1}`
	if got := string(AppendPointJSON(nil, p)); got != want {
		t.Fatalf("wire form\n%s\nwant\n%s", got, want)
	}
	// A Point inside another value marshals too (encoding/json alone
	// refuses NaN: "json: unsupported value: NaN").
	b, err := json.Marshal(struct{ Points []Point }{[]Point{p}})
	if err != nil || !strings.Contains(string(b), `"test_loss":null`) {
		t.Fatalf("nested: %s %v", b, err)
	}
	// Absent fields read as NaN, not as a silent 0.
	var q Point
	if err := json.Unmarshal([]byte(`{"kind":"forward","step":3}`), &q); err != nil || !math.IsNaN(q.Loss) || q.Step != 3 {
		t.Fatalf("absent fields: %+v %v", q, err)
	}
}

func TestPointCodecKindEscaping(t *testing.T) {
	for _, s := range []string{"", "forward", "a\"b", `back\slash`, "tab\t", "<html>&", "é", "\x00"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// The daemon's in-band report of a failure mid-stream is an error, not a
// zero Point.
func TestDecodePointLineError(t *testing.T) {
	_, err := decodePointLine([]byte(`{"error":"ckpt: run \"a\": metrics at step 9 is corrupt"}`))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 || !strings.Contains(se.Message, "metrics at step 9") {
		t.Fatalf("error line: %v", err)
	}
	if _, err := decodePointLine([]byte(`{"kind":`)); err == nil {
		t.Fatal("a truncated line decodes")
	}
}
