package ckpt_test

import (
	"fmt"
	"log"
	"os"

	"github.com/replay-sgd/replay/ckpt"
)

// A run's life in the store: create it with θ0, log forward steps, store a
// checkpoint, rebuild a forward iterate from the nearest checkpoint and the
// batch log, and verify the run.
func Example() {
	dir, err := os.MkdirTemp("", "ckpt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := ckpt.Open(ckpt.DefaultOptions(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// The operator of this example: θ ← θ/2 + Σ batch.
	step := func(theta []float32, batch []int32) {
		for i := range theta {
			for _, b := range batch {
				theta[i] = float32(theta[i]*0.5) + float32(b)
			}
		}
	}
	replay := func(theta []float32, from int, batches [][]int32) error {
		for _, b := range batches {
			step(theta, b)
		}
		return nil
	}

	theta := []float32{1, 2, 3}
	if err := s.CreateRun(ckpt.RunConfig{Name: "demo", Steps: 4, CheckpointEvery: 2, Dim: 3}, theta); err != nil {
		log.Fatal(err)
	}
	for n := 1; n <= 4; n++ {
		batch := []int32{int32(n)}
		step(theta, batch)
		if err := s.AppendForward("demo", []ckpt.ForwardStep{{Step: n, Batch: batch}}, ckpt.RunState{State: ckpt.StateRunning}); err != nil {
			log.Fatal(err)
		}
		if n%2 == 0 {
			if err := s.PutCheckpoint("demo", n, theta); err != nil {
				log.Fatal(err)
			}
		}
	}

	// θ_3 = checkpoint 2 replayed through step 3.
	th := make([]float32, 3)
	k, err := s.NearestCheckpoint("demo", 3, th)
	if err != nil {
		log.Fatal(err)
	}
	batches, err := s.Batches("demo", k+1, 3)
	if err != nil {
		log.Fatal(err)
	}
	_ = replay(th, k, batches)
	fmt.Println("θ_3 from checkpoint", k, "=", th)

	rep, err := s.Verify("demo", replay)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("verified %d checkpoints, %d steps replayed, ok=%v\n", rep.Checkpoints, rep.Steps, rep.OK())
	// Output:
	// θ_3 from checkpoint 2 = [4.375 4.5 4.625]
	// verified 3 checkpoints, 4 steps replayed, ok=true
}
