package nn

import (
	"errors"
	"strings"
	"testing"
)

// CountParams is Model.Dim without building the model.
func TestCountParamsMatchesModel(t *testing.T) {
	for _, c := range []struct {
		spec    string
		in, out int
		units   int64
		layers  int
	}{
		{"linear", 784, 10, 10, 1}, {"linear", 0, 1, 1, 1}, {"scalar", 0, 1, 1, 1},
		{"mlp:32", 1, 1, 33, 2}, {"mlp:500x5", 784, 10, 2510, 6}, {"mlp:64x2,32", 3, 2, 162, 4}, {"mlp:3x1000", 2, 2, 3002, 1001},
	} {
		m, err := NewModel(c.spec, c.in, c.out)
		if err != nil {
			t.Fatal(err)
		}
		sz, err := SizeOf(c.spec, c.in, c.out)
		if err != nil || sz.Params != int64(m.Dim()) || sz.Units != c.units || sz.Layers != c.layers {
			t.Errorf("%s: %+v %v, want params %d units %d layers %d", c.spec, sz, err, m.Dim(), c.units, c.layers)
		}
	}
}

// The specs of the issue are refused before anything is allocated, naming
// the size and the limit.
func TestCountParamsLimits(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"mlp:1x300000000", `has 300000001 layers, more than the limit of 1024`},
		{"mlp:4000000000x2", `has 1.6e+19 parameters, more than the limit of 1099511627776`},
		{"mlp:9223372036854775807", `bad width`},
		{"mlp:1x1023", `has 1024 layers`}, // 1023 hidden + the output
		{"mlp:" + strings.Repeat("1,", 5000) + "1", "longer than"},
	} {
		_, err := CountParams(c.spec, 784, 10)
		if c.spec == "mlp:1x1023" {
			if err != nil {
				t.Errorf("%s: %v, want accepted (exactly the limit)", c.spec, err)
			}
			continue
		}
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40s: %v, want ErrSpec containing %q", c.spec, err, c.want)
		}
		if _, err := NewModel(c.spec, 784, 10); !errors.Is(err, ErrSpec) {
			t.Errorf("NewModel(%.40s): %v", c.spec, err)
		}
	}
	// mlp:100000x100 fits the structural limits (9.9e11 parameters): the
	// daemon's own limits refuse it; the count is exact.
	n, err := CountParams("mlp:100000x100", 1, 1)
	if want := int64(100000+100000) + 99*(100000*100000+100000) + 100001; err != nil || n != want {
		t.Errorf("mlp:100000x100: %d %v, want %d", n, err, want)
	}
	// The cost does not grow with the repeat count.
	small := testing.AllocsPerRun(10, func() { CountParams("mlp:5x2", 784, 10) })
	deep := testing.AllocsPerRun(10, func() { CountParams("mlp:5x1000", 784, 10) })
	if deep != small {
		t.Errorf("allocations: %v for 1000 layers, %v for 2", deep, small)
	}
}
