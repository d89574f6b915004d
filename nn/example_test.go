package nn_test

import (
	"fmt"
	"log"

	"github.com/replay-sgd/replay/nn"
)

// Train the scalar quadratic of the paper's §3.1 for a few steps with
// recorded batches, then replay the same batches newest first: the backward
// iterate T_1∘T_2∘T_3(θ0).
func Example() {
	train, _, err := nn.LoadDataset("quadratic", "", 1)
	if err != nil {
		log.Fatal(err)
	}
	m, err := nn.NewModel("scalar", train.In, train.Out)
	if err != nil {
		log.Fatal(err)
	}
	loss, _ := nn.ParseLoss(nn.DefaultLoss("scalar", "quadratic"))

	// Record the batches: the log, not the sampler, is the source of truth.
	sampler := nn.NewSampler(train.N, 1, 1)
	batches := make(nn.BatchLog, 3)
	for k := range batches {
		batches[k] = make([]int32, 1)
		sampler.Batch(k+1, batches[k])
	}
	sgd, err := nn.NewSGD(m, loss, train, 0.5, batches)
	if err != nil {
		log.Fatal(err)
	}

	forward := []float32{4}
	for k := 1; k <= 3; k++ {
		sgd.Apply(k, forward) // θ_k = T_k(θ_{k−1})
	}
	backward := []float32{4}
	for k := 3; k >= 1; k-- {
		sgd.Apply(k, backward) // θ̃_3 = T_1(T_2(T_3(θ0)))
	}
	fmt.Printf("dim %d, tensors %v\n", m.Dim(), m.Tensors())
	fmt.Printf("forward %.4f, backward %.4f\n", forward[0], backward[0])
	// Output:
	// dim 1, tensors [{theta [1] 0}]
	// forward 0.8398, backward 1.7617
}
