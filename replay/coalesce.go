package replay

import "context"

// Coalescing evaluates backward iterates with a coalescence memo, in the
// spirit of Propp and Wilson's coupling from the past.
//
// Under an anchor (r, x_r) the chain of iterate n is
//
//	y_n^{n+1} = x_r,  y_n^k = T_k(y_n^{k+1}) for k = n, …, r+1,  θ̃_n = y_n^{r+1},
//
// computed from the inside out (T_n first). Level k means "after applying
// T_k". Coalescing keeps some levels of the chain of the previous iterate m
// and its result θ̃_m. While computing the chain of n it compares each new
// level k ≤ m that is kept with the kept y_m^k; when they are bitwise equal
// it stops and returns θ̃_m.
//
// Why this is exact: from level k on, both chains apply the same operators
// T_{k−1}, …, T_{r+1} to the same bits, and Apply is a deterministic
// function of (k, θ) (the Operators contract: same inputs, same bits out),
// so every later level, and the result, is bitwise the same. No tolerance is
// involved, so the result is bitwise equal to Direct's. Where the maps
// contract, neighbouring chains meet within a few multiples of
// log(ulp)/log(ρ) levels, so the cost per step stops growing with n; where
// they do not meet, the cost is Direct's plus one comparison per kept level.
//
// Memory: kept levels are those with (k − r) a multiple of the stride; their
// total size (levels × Dim × 4 bytes) stays within the byte budget. When a
// new level would exceed it, the stride doubles and every other kept level is
// dropped, so the budget holds for any n at the price of stopping up to
// stride−1 levels later than possible. Outside the budget: the result θ̃_m,
// a copy of the anchor start, and the operators' own scratch (3 × Dim
// floats). A budget below one level keeps nothing and the evaluator costs
// as much as Direct.
//
// The memo holds one anchor; another anchor (step or start bits) discards
// it. Calls may come in any order of n: the comparison is valid between
// chains of any two iterates under the same anchor.
type Coalescing struct {
	ops       Operators
	dim       int
	maxLevels int // levels the budget holds
	stride    int

	valid  bool
	step   int       // anchor step r
	start  []float32 // copy of x_r
	top    int       // the memo is the chain of iterate top
	last   []float32 // θ̃_top
	levels [][]float32
	// levels[i] is level r + (i+1)·stride of the chain of top, or nil when
	// not kept (above top or not reached yet).
	kept int         // non-nil entries of levels
	free [][]float32 // buffers of dropped levels, reused (kept+len(free) ≤ maxLevels)
}

var _ Evaluator = (*Coalescing)(nil)

// NewCoalescing returns a Coalescing evaluator over ops that keeps at most
// budgetBytes of chain levels. stride is the initial distance between kept
// levels (≤ 0 means 1); it grows by doubling when the budget requires.
func NewCoalescing(ops Operators, budgetBytes int64, stride int) *Coalescing {
	if stride <= 0 {
		stride = 1
	}
	dim := ops.Dim()
	maxLevels := 0
	if dim > 0 && budgetBytes > 0 {
		maxLevels = int(min(budgetBytes/int64(4*dim), int64(1)<<40))
	}
	return &Coalescing{
		ops: ops, dim: dim, maxLevels: maxLevels, stride: stride,
		start: make([]float32, dim),
		last:  make([]float32, dim),
	}
}

// Stride returns the current distance between kept levels.
func (c *Coalescing) Stride() int { return c.stride }

// KeptBytes returns the memory held by kept levels (bounded by the budget).
func (c *Coalescing) KeptBytes() int64 { return int64(c.kept) * int64(4*c.dim) }

// Eval implements Evaluator; the count is the number of Apply calls made.
// dst receives the result; the memo never aliases it.
func (c *Coalescing) Eval(ctx context.Context, dst []float32, a Anchor, n int) (int, error) {
	if err := checkEval(c.dim, dst, a, n); err != nil {
		return 0, err
	}
	if !c.valid || a.Step != c.step || !sameBits(c.start, a.Start) {
		c.restart(a)
	}
	r := c.step
	// Levels above n belong to the old chain only: drop them.
	for i := len(c.levels) - 1; i >= 0 && r+(i+1)*c.stride > n; i-- {
		if c.levels[i] != nil {
			c.drop(i)
		}
		c.levels = c.levels[:i]
	}
	copy(dst, c.start)
	applied := 0
	met := false
	for k := n; k > r; k-- {
		if applied%checkEvery == 0 {
			if err := cancelled(ctx, n); err != nil {
				// Levels of this chain and of the previous one are mixed
				// now: start over (exact either way, only slower).
				c.valid = false
				return applied, err
			}
		}
		c.ops.Apply(k, dst)
		applied++
		if (k-r)%c.stride != 0 {
			continue
		}
		i := (k-r)/c.stride - 1
		if k <= c.top && i < len(c.levels) && c.levels[i] != nil {
			if sameBits(c.levels[i], dst) {
				met = true
				break
			}
			copy(c.levels[i], dst)
			continue
		}
		c.keep(k, dst)
	}
	if met {
		copy(dst, c.last)
	} else {
		copy(c.last, dst)
	}
	c.top = n
	return applied, nil
}

// keep stores level k of the current chain if the budget allows, doubling
// the stride first when it does not.
func (c *Coalescing) keep(k int, y []float32) {
	r := c.step
	for c.kept+1 > c.maxLevels {
		if c.maxLevels == 0 {
			return
		}
		c.doubleStride()
		if (k-r)%c.stride != 0 {
			return
		}
	}
	i := (k-r)/c.stride - 1
	for len(c.levels) <= i {
		c.levels = append(c.levels, nil)
	}
	if c.levels[i] == nil {
		if n := len(c.free); n > 0 {
			c.levels[i] = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			c.levels[i] = make([]float32, c.dim)
		}
		c.kept++
	}
	copy(c.levels[i], y)
}

// drop releases kept level index i.
func (c *Coalescing) drop(i int) {
	c.free = append(c.free, c.levels[i])
	c.levels[i] = nil
	c.kept--
}

// doubleStride keeps the levels whose offset is a multiple of 2·stride.
func (c *Coalescing) doubleStride() {
	old := c.levels
	c.levels = make([][]float32, len(old)/2)
	for i, l := range old {
		if l == nil {
			continue
		}
		if (i+1)%2 == 0 {
			c.levels[(i+1)/2-1] = l
		} else {
			c.free = append(c.free, l)
			c.kept--
		}
	}
	c.stride *= 2
}

func (c *Coalescing) restart(a Anchor) {
	c.valid = true
	c.step = a.Step
	c.top = a.Step
	copy(c.start, a.Start)
	copy(c.last, a.Start)
	for i, l := range c.levels {
		if l != nil {
			c.drop(i)
		}
	}
	c.levels = c.levels[:0]
}
