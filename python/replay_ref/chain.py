"""Chains of torch.optim steps: the forward and backward iterates.

A step is what docs/protocol.md's apply does and what a researcher's
training loop does: model.train(), zero the gradients, the batch loss,
backward, optimizer.step(). A chain starts from θ_0 with a fresh optimizer
(zero buffers, t = 0), so the backward iterate θ̃_N is a chain over batches
N, N−1, …, 1 and shares nothing with the forward one but θ_0.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch

from . import optim
from .errors import InputError


class Data:
    """The training split, indexed by the batch log's indices.

    x holds the inputs as float32 (any shape, examples first) or uint8
    pixels to be scaled by 1/255 per batch; y the targets (int64 classes or
    float targets); target maps y to what the loss takes.
    """

    def __init__(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                 target: Callable[[torch.Tensor], torch.Tensor] = lambda y: y):
        self.x, self.y, self.target = x, y, target
        self.n = int(x.shape[0])
        if int(y.shape[0]) != self.n:
            raise InputError(f"data set: {self.n} inputs but {int(y.shape[0])} targets")

    def batch(self, idx: np.ndarray, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.x[idx] if isinstance(self.x, np.ndarray) else self.x[torch.from_numpy(idx)]
        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8:
                from .data import scale
                x = scale(x)
            x = torch.from_numpy(np.ascontiguousarray(x))
        y = self.y[idx] if isinstance(self.y, np.ndarray) else self.y[torch.from_numpy(idx)]
        if isinstance(y, np.ndarray):
            y = torch.from_numpy(np.ascontiguousarray(y))
        # float32 first, then (for the shadow) exactly widened to float64:
        # both chains see bitwise the inputs replay sees.
        x = x.to(torch.float32).to(dtype)
        y = self.target(y)
        if y.is_floating_point():
            y = y.to(torch.float32).to(dtype)
        return x, y


def load_theta(module: torch.nn.Module, theta0: Dict[str, np.ndarray], what: str) -> None:
    """Loads θ_0 by name: every state_dict entry must be there, with its shape."""
    sd = module.state_dict()
    missing = [k for k in sd if k not in theta0]
    extra = [k for k in theta0 if k not in sd and not k.startswith("optim.")]
    if missing or extra:
        raise InputError(f"{what}: tensors do not match the model: missing {missing}, unexpected {extra}")
    new = {}
    for k, v in sd.items():
        a = theta0[k]
        if list(a.shape) != list(v.shape):
            raise InputError(f"{what}: tensor {k} has shape {list(a.shape)}, the model's is {list(v.shape)}")
        new[k] = torch.from_numpy(np.array(a, order="C")).to(v.dtype)  # 0-d stays 0-d
    module.load_state_dict(new)


def load_optimizer_state(spec: optim.Spec, opt: torch.optim.Optimizer, params: List[torch.nn.Parameter],
                         start: Dict[str, np.ndarray], dtype: torch.dtype) -> int:
    """Puts the optimizer state of start (export names) into opt and returns
    its t. At t = 0 the state stays torch's fresh one (no momentum buffer:
    the first step then sets it to the gradient, undamped)."""
    names = optim.state_names(spec.name, len(params))
    if not names:
        return 0
    t = int(float(start["optim.step"]))
    if t == 0:
        return 0
    for i, p in enumerate(params):
        def get(key: str) -> torch.Tensor:
            return torch.from_numpy(np.array(start[f"optim.state.{i}.{key}"], order="C")).to(dtype).reshape(p.shape)
        if spec.name in ("momentum", "nesterov"):
            opt.state[p] = {"momentum_buffer": get("momentum_buffer")}
        else:
            opt.state[p] = {"step": torch.tensor(float(t)), "exp_avg": get("exp_avg"), "exp_avg_sq": get("exp_avg_sq")}
    return t


def run(make_model: Callable[[], torch.nn.Module], theta0: Dict[str, np.ndarray], data: Data,
        loss_fn: torch.nn.Module, spec: optim.Spec, order: Sequence[np.ndarray],
        snapshots: Iterable[int], dtype: torch.dtype,
        start: Dict[str, np.ndarray] | None = None) -> Dict[int, Dict[str, np.ndarray]]:
    """Applies the batches of order in turn in dtype, from (θ_0, fresh
    state) or from start (a whole state under the export names: an anchor's
    start point), and returns, for each j in snapshots (0 ≤ j ≤ len(order)),
    the whole state after j steps of this chain, as float64 arrays."""
    want = set(snapshots)
    if any(t < 0 or t > len(order) for t in want):
        raise ValueError(f"snapshots {sorted(want)} outside 0..{len(order)}")
    module = make_model().to(dtype)  # first: a float64 start state must not pass through float32
    load_theta(module, theta0 if start is None else start, "theta0" if start is None else "anchor start")
    params: List[torch.nn.Parameter] = [p for p in module.parameters() if p.requires_grad]
    opt = spec.build(params)
    t0 = 0 if start is None else load_optimizer_state(spec, opt, params, start, dtype)
    loss_fn = loss_fn.to(dtype)
    out: Dict[int, Dict[str, np.ndarray]] = {}

    def snap(j: int) -> None:
        s = {k: v.detach().to(torch.float64).numpy().copy() for k, v in module.state_dict().items()}
        s.update(optim.named_state(spec, opt, params, t0 + j))
        out[j] = s

    if 0 in want:
        snap(0)
    for t, idx in enumerate(order, start=1):
        x, y = data.batch(np.asarray(idx, dtype=np.int64), dtype)
        module.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(x), y)
        loss.backward()
        opt.step()
        if t in want:
            snap(t)
    return out
