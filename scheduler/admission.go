package scheduler

import (
	"fmt"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/internal/echo"
)

// Admission control: before a run is stored (Create) or started again
// (New, Resume) its memory and disk are estimated from its configuration
// alone — no data loaded, no vector allocated — and a run whose estimate
// exceeds Options.MaxParams, MaxRunMemory or MaxRunDisk is refused with one
// line naming the estimate, its largest part and the limit.
//
// The estimate is an upper bound of what the run holds at once under the
// bounds of doc.go ("Pacing and memory bounds"), not of what it allocates
// over time: the garbage collector's headroom (bounded by the daemon's soft
// memory limit) and Badger's write amplification are not counted.

// Sizes used by the estimate.
const (
	// recOverhead is the bytes a stored record costs beyond its value: the
	// key (a run name of at most maxNameLen bytes, the kind and up to two
	// 8-byte numbers) and Badger's entry headers in the LSM tree and the
	// value log.
	recOverhead = 128
	// blobHeader is the header of a parameter or batch record (ckpt's
	// msgpack [n, crc, bin]).
	blobHeader = 20
	// metricsRecBytes bounds one msgpack-encoded ckpt.Metrics record
	// (eight named fields).
	metricsRecBytes = 128
)

// DefaultMaxParams is the parameter limit for the store's default value-log
// file size (ckpt.DefaultOptions): Badger refuses a value larger than one
// value-log file, and a checkpoint is one value of 4 bytes per parameter.
var DefaultMaxParams = MaxParamsForValueSize(ckpt.DefaultOptions("").ValueLogFileSize)

// MaxParamsForValueSize is the largest model whose parameter vector fits one
// store value of at most valueLogFileSize bytes (ckpt.Options.ValueLogFileSize).
func MaxParamsForValueSize(valueLogFileSize int64) int64 {
	return max(0, (valueLogFileSize-blobHeader)/4)
}

// Part is one term of an Estimate.
type Part struct {
	Name  string
	Bytes int64
}

// Estimate is what a run is predicted to need.
type Estimate struct {
	Params int64
	// Memory is the bytes the run holds at once at most; MemoryParts its
	// terms (they sum to Memory).
	Memory      int64
	MemoryParts []Part
	// Disk is the bytes the run's records take in the store once it is
	// done; DiskParts its terms.
	Disk      int64
	DiskParts []Part
}

// estimate computes cfg's Estimate under opts from its family's size
// (family.Size: parameters, data set, scratch, memo). It fails only for a
// spec that Resolve would refuse (no family knows the model, or its family
// refuses the spec).
func estimate(cfg ckpt.RunConfig, opts Options) (Estimate, error) {
	_, sz, err := opts.sizeOf(cfg)
	if err != nil {
		return Estimate{}, err
	}
	var e Estimate
	e.Params = sz.Params
	vec := 4 * sz.Params // one parameter vector, float32
	w := int64(opts.Workers)
	slots := int64(opts.querySlots())

	// Memory. Vectors of the run: 2·Workers + 4 in flight, in the reorder
	// buffer, at the frontier, the anchor start and the trainer's two;
	// Workers + 1 recycled; two more for an adaptive trial (doc.go).
	vectors := 3*w + 5
	if cfg.ResetPolicy == PolicyImprove {
		vectors += 2
	}
	// Forward cursors: the backward loop's, and for sliding windows each
	// worker's (its cursor and the window start).
	vectors++
	if cfg.Strategy == StrategySliding {
		vectors += 2 * w
	}
	// A recomputation of Params or Verify: the result, the anchor start
	// and a forward cursor.
	vectors += 3 * slots
	// Scratch of every goroutine applying operators or evaluating: the
	// workers, the trainer, the backward loop and the query slots, each
	// the family's scratch of one goroutine (operators and measurer).
	scratch := (w + 2 + slots) * sz.ScratchBytes
	// The memo of a memo run (the backward loop's; an affine one also per
	// query slot, which recomputes with a fresh prefix).
	var memo int64
	if cfg.Strategy == StrategyMemo {
		if sz.MemoBytes > 0 {
			memo = (1 + slots) * (sz.MemoBytes + vec)
		} else {
			memo = opts.MemoBudget
		}
	}
	// The batch log: whole epochs of the sampler in a bounded cache.
	batchLog := int64(batchLogSlots(opts)+1) * 4 * int64(sz.Train)
	e.MemoryParts = []Part{
		{"parameter vectors", vectors * vec},
		{"scratch", scratch},
		{"memo", memo},
		{"batch log", batchLog},
		{"data set", sz.DataBytes},
	}

	// Disk: the live records of a finished run.
	steps := int64(cfg.Steps)
	checkpoints := steps/int64(cfg.CheckpointEvery) + 2 // θ0, every CheckpointEvery, the last
	segments := int64(len(cfg.ResetAt)) + 2             // init, resets, backward_from
	if pc, _ := strategyOf(&cfg); pc.Window > 0 {
		// The periodic resets of the anchor policy (window and memo).
		segments += ceilDiv(steps, int64(pc.Window))
	}
	paramRec := vec + blobHeader + recOverhead
	metricsRec := int64(metricsRecBytes + recOverhead)
	e.DiskParts = []Part{
		{"checkpoints", checkpoints * paramRec},
		{"batch log", steps * (4*int64(cfg.Batch) + blobHeader + recOverhead)},
		// Forward metrics, backward metrics of the segment and the latest
		// backward metrics of every step.
		{"metrics", 3 * steps * metricsRec},
		// Each segment's anchor start and the iterate kept at its step,
		// and the last backward iterate.
		{"anchors", (2*segments + 1) * paramRec},
	}
	e.Memory, e.Disk = sum(e.MemoryParts), sum(e.DiskParts)
	return e, nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func sum(ps []Part) int64 {
	var t int64
	for _, p := range ps {
		t += p.Bytes
	}
	return t
}

// largest returns the name of the largest part.
func largest(ps []Part) Part {
	var best Part
	for _, p := range ps {
		if p.Bytes > best.Bytes {
			best = p
		}
	}
	return best
}

// admit checks cfg against the limits of opts: the model's size first (it
// is what the store can hold at all), then memory, then disk. The error
// wraps ErrTooLarge (and so ErrInvalid) and is one line.
func admit(cfg ckpt.RunConfig, opts Options) (Estimate, error) {
	e, err := estimate(cfg, opts)
	if err != nil {
		return e, err
	}
	if opts.MaxParams > 0 && e.Params > opts.MaxParams {
		return e, fmt.Errorf("model %s has %d parameters (%s per vector), more than the limit of %d (one store value): %w",
			echo.Clip(cfg.Model), e.Params, FormatBytes(4*e.Params), opts.MaxParams, ErrTooLarge)
	}
	if opts.MaxRunMemory > 0 && e.Memory > opts.MaxRunMemory {
		p := largest(e.MemoryParts)
		return e, fmt.Errorf("run needs an estimated %s of memory (%s %s), more than the limit of %s per run (--max-run-memory): %w",
			FormatBytes(e.Memory), p.Name, FormatBytes(p.Bytes), FormatBytes(opts.MaxRunMemory), ErrTooLarge)
	}
	if opts.MaxRunDisk > 0 && e.Disk > opts.MaxRunDisk {
		p := largest(e.DiskParts)
		return e, fmt.Errorf("run needs an estimated %s of disk (%s %s), more than the limit of %s per run (--max-run-disk): %w",
			FormatBytes(e.Disk), p.Name, FormatBytes(p.Bytes), FormatBytes(opts.MaxRunDisk), ErrTooLarge)
	}
	return e, nil
}

// FormatBytes writes n in binary units with three significant digits
// ("40.6 GiB", "512 B").
func FormatBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %ciB", v, units[i])
	case v >= 10:
		return fmt.Sprintf("%.1f %ciB", v, units[i])
	}
	return fmt.Sprintf("%.2f %ciB", v, units[i])
}
