"""replay_ref: replay's iterates recomputed by plain PyTorch.

The reference check of the project (DESIGN.md §1 and §5): given what
``replayctl export`` writes — θ_0 as safetensors, the batch log as .npy
int64 [steps, batch] indexing the training split in file order — this
package rebuilds the model in PyTorch, feeds torch.optim the batches

- 1, 2, …, N from (θ_0, fresh optimizer state): the forward iterate θ_N;
- N, N−1, …, 1 from (θ_0, fresh optimizer state): the backward iterate θ̃_N,

and compares both with the exported iterates, tensor by tensor, under a
tolerance derived in tolerance.py (float32 rounding along the chain,
measured by a float64 shadow of the same computation).

It depends on the standard library, numpy and Debian's python3-torch
(1.13) only, and is run with Debian's interpreter::

    /usr/bin/python3 -m replay_ref check --model mlp:32 \\
        --theta0 theta0.safetensors --batches batches.npy \\
        --optimizer adam --lr 1e-3 \\
        --check forward:50=f50.safetensors --check backward:50=b50.safetensors

It is independent of python/replay_worker (the operator-protocol worker):
the point of a reference is that it shares no code with what it checks.

Invariants:
- Every number it compares is computed from the exported files and the
  data set alone; nothing is read from the daemon.
- The optimizer state of a chain starts zero with t = 0 (torch.optim's fresh
  state); the names of the exported state follow docs/protocol.md
  ("The optimizer state"): optim.state.<i>.momentum_buffer,
  optim.state.<i>.exp_avg, optim.state.<i>.exp_avg_sq, optim.step.
- Exit status: 0 all within tolerance, 1 some tensor outside it (or not
  finite, or missing), 2 bad input (one line on stderr).
"""
