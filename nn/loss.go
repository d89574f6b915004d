package nn

import (
	"fmt"
	"math"
)

// Loss is a loss function, as PyTorch defines it, averaged over a batch.
type Loss int

// The losses. For a batch of b samples with predictions z_i and targets y_i
// (rows of Dataset.Y, out values each):
const (
	// CrossEntropy is torch.nn.CrossEntropyLoss: (1/b) Σ_i −Σ_j y_ij log softmax(z_i)_j.
	// With one-hot targets this is the mean negative log-likelihood.
	CrossEntropy Loss = iota + 1
	// MSE is torch.nn.MSELoss: the mean over all b·out elements of (z−y)².
	MSE
	// Quadratic is (1/b) Σ_i Σ_j a(z_ij − y_ij)²/2 with a = QuadraticA; with the
	// scalar model it is the paper's §3.1 loss a(θ − y_i)²/2.
	Quadratic
)

// QuadraticA is the curvature a of the Quadratic loss.
const QuadraticA = 1.0

// ParseLoss returns the loss named "cross-entropy", "mse" or "quadratic".
func ParseLoss(name string) (Loss, error) {
	switch name {
	case "cross-entropy":
		return CrossEntropy, nil
	case "mse":
		return MSE, nil
	case "quadratic":
		return Quadratic, nil
	}
	return 0, fmt.Errorf("loss %q (want cross-entropy, mse or quadratic): %w", name, ErrSpec)
}

// String returns the name ParseLoss accepts.
func (l Loss) String() string {
	switch l {
	case CrossEntropy:
		return "cross-entropy"
	case MSE:
		return "mse"
	case Quadratic:
		return "quadratic"
	}
	return fmt.Sprintf("Loss(%d)", int(l))
}

// DefaultLoss returns the loss a run uses unless told otherwise:
// quadratic for the scalar model, mse for the linear model and for the
// regression and quadratic data sets, cross-entropy otherwise.
func DefaultLoss(model, dataset string) string {
	switch {
	case model == "scalar":
		return Quadratic.String()
	case model == "linear", dataset == "quadratic", len(dataset) >= 10 && dataset[:10] == "regression":
		return MSE.String()
	}
	return CrossEntropy.String()
}

// sampleLoss returns the loss ℓ of one sample (prediction z, target y) and,
// if g is not nil, writes scale·∂ℓ/∂z into g. The batch loss is the mean of
// ℓ over the batch, so callers pass scale = 1/b. Arithmetic is in float64.
func (l Loss) sampleLoss(z, y, g []float32, scale float64) float64 {
	switch l {
	case CrossEntropy:
		zmax := math.Inf(-1)
		for _, v := range z {
			zmax = max(zmax, float64(v))
		}
		var sum, ysum float64
		for _, v := range z {
			sum += math.Exp(float64(v) - zmax)
		}
		lse := zmax + math.Log(sum)
		var loss float64
		for j, v := range z {
			loss -= float64(y[j]) * (float64(v) - lse)
			ysum += float64(y[j])
		}
		if g != nil {
			// ∂ℓ/∂z_j = Σ_k y_k · softmax_j − y_j (Σ_k y_k = 1 for one-hot).
			for j, v := range z {
				g[j] = float32(scale * (ysum*math.Exp(float64(v)-lse) - float64(y[j])))
			}
		}
		return loss
	case MSE:
		inv := 1 / float64(len(z))
		var loss float64
		for j, v := range z {
			d := float64(v) - float64(y[j])
			loss += d * d
			if g != nil {
				g[j] = float32(scale * 2 * inv * d)
			}
		}
		return loss * inv
	case Quadratic:
		var loss float64
		for j, v := range z {
			d := float64(v) - float64(y[j])
			loss += QuadraticA * d * d / 2
			if g != nil {
				g[j] = float32(scale * QuadraticA * d)
			}
		}
		return loss
	}
	panic(fmt.Sprintf("nn: unknown loss %d", int(l)))
}
