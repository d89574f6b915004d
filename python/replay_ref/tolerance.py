"""How close replay's float32 iterates must be to PyTorch's.

The derivation. Let s_n be the exact (real-arithmetic) state of a chain
after n steps, ŝ_n replay's float32 result and s'_n PyTorch's float32
result. Each float32 step makes a local error: ŝ_{n+1} = T(ŝ_n) + ê_n, with
ê_n bounded elementwise by the unit roundoff u = 2^-24 times the magnitudes
involved — u·|θ| for the final rounding of the update, plus η·γ_K·(|W|·|a|
and |δ|·|a| sums) for the gradient's dot products of length K (784 inputs,
the batch of 8, the hidden width), γ_K = K·u/(1 − K·u) at worst and ≈ √K·u
in practice. Both implementations make errors of that size, but not the
same errors: the summation order inside the GEMMs differs (OpenBLAS's
AVX-512 kernel in replayd; oneDNN or the generic BLAS Debian's torch is built
with here; MKL elsewhere), and so does the fusion of the update (replay
writes θ += −η·δᵀa as one GEMM with beta = 1, torch adds a rounded gradient).

The difference between two such chains evolves as δ_{n+1} = J_n·δ_n + e_n,
with J_n the Jacobian of the step at the iterate: I − ηH for SGD, a 2×2
block matrix for momentum, and for Adam a matrix scaled by lr/(√v̂ + ε),
large wherever v̂ is small. J_n is not contractive here (ReLU networks early
in training, Adam's normalisation), so the a-priori bound
Σ_n Π_m ‖J_m‖·|e_n| ≤ N·max|e|·max‖J‖^N is either vacuous or needs the
Hessians of the run. Instead the check measures the propagation: the same
chain computed in float64 from bitwise the same inputs (float32 θ_0 and
images, widened exactly) is s_n to within float64 rounding (2^29 times
smaller), so E = max|s'_N − s64_N| over a tensor is the float32 error of
this very chain — local float32 errors pushed through the real J_n.
replay's chain has local errors of the same size propagated through the
same J_n, so max|ŝ_N − s_N| ≈ E and, by the triangle inequality,

    max|ŝ_N − s'_N| ≤ max|ŝ_N − s_N| + max|s'_N − s_N| ≈ 2·E.

The tolerance of a tensor (on the max norm: elementwise relative errors are
meaningless near zero) is therefore

    tol = C·E + F·N·u·max|s64_N|

with C = 2 (the triangle inequality) × 2 (which errors each implementation
happens to make is random: E is one sample of a float32 error, replay's is
another) = 4, and a floor for chains whose measured E is accidentally small
(N = 1: one rounding per element): two correctly rounded implementations
may still differ by about one ulp of the largest element per step, F = 2.
The empirical factor, max|ŝ_N − s'_N| / E, is printed with every check
(column "×E"). Measured on replayd's mlp:32 runs (README.md in this
directory): 1–3 for SGD, momentum and Nesterov; up to 5 for a few Adam
tensors (a gradient element near ε makes the update sensitive to its
rounding), which the floor covers: the largest error seen was 0.63 of its
tolerance, over 1400 tensor comparisons.

optim.step is an integer (t ≤ 2^24 in float32) and is compared exactly.
"""

from __future__ import annotations

import numpy as np

U = 2.0**-24  # float32 unit roundoff
C = 4.0
F = 2.0


def tolerance(e32: float, steps: int, scale: float) -> float:
    """The tolerance of one tensor: e32 = max|torch32 − torch64|, steps = N,
    scale = max|torch64|."""
    return C * e32 + F * max(steps, 1) * U * scale


def compare(got: np.ndarray, ref32: np.ndarray, ref64: np.ndarray, steps: int) -> dict:
    """Max abs error of got against PyTorch's float32 result, the normwise
    relative error, the measured float32 error E, the tolerance and the
    verdict."""
    got = np.asarray(got, dtype=np.float64)
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    if not np.all(np.isfinite(got)):
        return {"abs": float("nan"), "rel": float("nan"), "e32": 0.0, "tol": 0.0, "x": float("nan"), "ok": False,
                "why": "not finite"}
    err = float(np.max(np.abs(got - ref32))) if got.size else 0.0
    e32 = float(np.max(np.abs(ref32 - ref64))) if got.size else 0.0
    tol = tolerance(e32, steps, scale)
    return {"abs": err, "rel": err / scale if scale else err, "e32": e32, "tol": tol,
            "x": err / e32 if e32 else (0.0 if err == 0 else float("inf")), "ok": err <= tol, "why": ""}
