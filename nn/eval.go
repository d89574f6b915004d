package nn

import "math"

// evalChunk is the number of samples an Evaluator pushes through the model
// at once: large enough for efficient GEMMs, small enough to keep the
// scratch space (chunk × widest layer) well under a megabyte for the MLPs
// here.
const evalChunk = 256

// Evaluator computes the loss and accuracy of parameters on a fixed set of
// samples. It owns scratch space and is not safe for concurrent use; make
// one per goroutine.
type Evaluator struct {
	eng *engine
	idx []int32
}

// NewEvaluator returns an evaluator of model m with loss on the samples idx
// of data (all of them when idx is nil). It panics if the data set does not
// fit the model (NewSGD reports that as an error first) or idx is out of
// range.
func NewEvaluator(m *Model, loss Loss, data *Dataset, idx []int32) *Evaluator {
	if err := data.check(m); err != nil {
		panic(err.Error())
	}
	if idx == nil {
		idx = FixedSubset(data.N, 0, 0)
	}
	checkBatch(idx, data)
	return &Evaluator{eng: newEngine(m, loss, data, defaultBLAS), idx: idx}
}

// Eval returns the mean loss of theta over the evaluator's samples (the
// same per-sample loss the training batches average) and the fraction of
// samples whose largest output is their label. acc is NaN when the data set
// has no labels (regression, quadratic).
func (e *Evaluator) Eval(theta []float32) (loss, acc float64) {
	checkTheta("Evaluator.Eval", theta, e.eng.m)
	out := e.eng.m.out
	d := e.eng.data
	var sum float64
	correct := 0
	for start := 0; start < len(e.idx); start += evalChunk {
		batch := e.idx[start:min(start+evalChunk, len(e.idx))]
		logits := e.eng.forward(theta, batch)
		for i, s := range batch {
			z := logits[i*out : (i+1)*out]
			sum += e.eng.loss.sampleLoss(z, d.Y[int(s)*out:(int(s)+1)*out], nil, 0)
			if d.Labels != nil && argmax(z) == int(d.Labels[s]) {
				correct++
			}
		}
	}
	n := float64(len(e.idx))
	if d.Labels == nil {
		return sum / n, math.NaN()
	}
	return sum / n, float64(correct) / n
}

// argmax returns the first index of the largest value.
func argmax(z []float32) int {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	return best
}
