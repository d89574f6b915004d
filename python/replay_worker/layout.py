"""The flat state vector (docs/protocol.md, hello and "The optimizer state").

θ is every tensor of the module's state_dict in order, flattened row-major,
as float32 (integer buffers converted exactly; they must stay within
±2^24). After θ comes the optimizer's state:

    sgd                  nothing
    momentum, nesterov   optim.state.<i>.momentum_buffer for every parameter i,
                         then optim.step (one element)
    adam, adamw          optim.state.<i>.exp_avg for every i, then
                         optim.state.<i>.exp_avg_sq for every i, then optim.step

where i indexes the `param` tensors (parameters with requires_grad, each
tensor once) in state_dict order, which is also the order the optimizer is
given them, so <i> is the index torch.optim's own state_dict uses.
optim.step, t, is the number of steps the state has taken; t = 0 means
torch.optim has no state yet (a momentum buffer is then absent: the first
step sets it to the gradient, without dampening).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

INT_LIMIT = 1 << 24
"""Integers up to this magnitude are exact in float32."""

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


class LayoutError(Exception):
    """A state does not fit the layout, or a model cannot have one."""


@dataclass(frozen=True)
class Entry:
    """One tensor of θ."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    param: bool

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype_name, "param": self.param}


def _is_int(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex


class Layout:
    """The layout of a module's state and of an optimizer's state over it."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.theta_dim = sum(e.numel for e in entries)
        self.param_entries = [e for e in entries if e.param]

    @classmethod
    def of(cls, module: torch.nn.Module) -> "Layout":
        """The layout of module's state_dict; refuses what cannot travel
        exactly as float32."""
        entries = []
        seen: set[int] = set()
        for name, t in module.state_dict(keep_vars=True).items():
            if t.is_complex() or (t.is_floating_point() and t.dtype != torch.float32):
                raise LayoutError(
                    f"tensor {name} is {t.dtype}: the protocol carries float32 state "
                    "(and integer buffers); convert the model to float32"
                )
            # A tied parameter appears under several names; the optimizer
            # sees it once, under its first name.
            param = isinstance(t, torch.nn.Parameter) and t.requires_grad and id(t) not in seen
            if param:
                seen.add(id(t))
            entries.append(Entry(name=name, shape=tuple(t.shape), dtype=t.dtype, param=param))
        if not entries:
            raise LayoutError("the module's state_dict is empty: nothing to train")
        return cls(entries)

    def same(self, other: "Layout") -> bool:
        return self.entries == other.entries

    def _tensors(self, module: torch.nn.Module) -> list[torch.Tensor]:
        # Read state_dict afresh every time: a module may replace a buffer
        # instead of updating it in place.
        sd = module.state_dict(keep_vars=True)
        if len(sd) != len(self.entries) or any(
            n != e.name or tuple(t.shape) != e.shape or t.dtype != e.dtype
            for (n, t), e in zip(sd.items(), self.entries)
        ):
            raise LayoutError("the module's state_dict changed its tensors (names, shapes or dtypes)")
        return list(sd.values())

    def params(self, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The param tensors in layout order: the optimizer's parameters."""
        return [t for t, e in zip(self._tensors(module), self.entries) if e.param]

    def flatten(self, module: torch.nn.Module, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """θ of module as a float32 CPU vector: into out (theta_dim
        elements) if given, so that a reply's bytes are written once."""
        if out is None:
            out = torch.empty(self.theta_dim, dtype=torch.float32)
        if out.numel() != self.theta_dim:
            raise ValueError(f"flatten into {out.numel()} elements, θ has {self.theta_dim}")
        off = 0
        for t, e in zip(self._tensors(module), self.entries):
            t = t.detach()
            if _is_int(e.dtype) and t.numel() and int(t.abs().max()) > INT_LIMIT:
                raise LayoutError(f"integer buffer {e.name} exceeds 2^24 and cannot travel exactly as float32")
            out[off : off + e.numel].copy_(t.reshape(-1))  # to float32 and to the CPU
            off += e.numel
        return out

    def load(self, module: torch.nn.Module, theta: torch.Tensor) -> None:
        """Copies θ (float32, theta_dim elements) into module's tensors."""
        if theta.numel() != self.theta_dim:
            raise LayoutError(f"θ has {theta.numel()} elements, the layout {self.theta_dim}")
        off = 0
        with torch.no_grad():
            for t, e in zip(self._tensors(module), self.entries):
                v = theta[off : off + e.numel].view(e.shape)
                off += e.numel
                if _is_int(e.dtype):
                    if ((v != v.round()) | (v.abs() > INT_LIMIT)).any():  # NaN included
                        raise LayoutError(f"integer buffer {e.name} holds a value that is not an integer within 2^24")
                t.copy_(v)  # converts to t's dtype and device; exact for integers ≤ 2^24

    # The optimizer's state.

    def optim_entries(self, name: str) -> list[tuple[str, tuple[int, ...]]]:
        """The names and shapes of the optimizer's state tensors, in order."""
        idx = range(len(self.param_entries))
        shapes = [e.shape for e in self.param_entries]
        if name == "sgd":
            return []
        if name in ("momentum", "nesterov"):
            out = [(f"optim.state.{i}.momentum_buffer", shapes[i]) for i in idx]
        elif name in ("adam", "adamw"):
            out = [(f"optim.state.{i}.exp_avg", shapes[i]) for i in idx]
            out += [(f"optim.state.{i}.exp_avg_sq", shapes[i]) for i in idx]
        else:
            raise LayoutError(f"unknown optimizer {name!r} (want one of {', '.join(OPTIMIZERS)})")
        return out + [("optim.step", ())]

    def dim(self, name: str) -> int:
        """The length of the state vector under optimizer name."""
        n = self.theta_dim
        for _, shape in self.optim_entries(name):
            k = 1
            for d in shape:
                k *= d
            n += k
        return n

    def load_optimizer(
        self, name: str, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], rest: torch.Tensor
    ) -> int:
        """Loads the optimizer's part of the state vector into opt (whose
        state must be empty) and returns t."""
        if name == "sgd":
            if rest.numel():
                raise LayoutError(f"sgd has no optimizer state, the state has {rest.numel()} extra elements")
            return 0
        t = _step_count(rest[-1])
        if t == 0:
            return 0  # "no state yet": torch.optim creates it at the first step
        off = 0
        if name in ("momentum", "nesterov"):
            if not any(g["momentum"] for g in opt.param_groups):
                return t  # SGD with momentum 0 keeps no buffers; the zeros stay zeros
            for p in params:
                n = p.numel()
                opt.state[p]["momentum_buffer"] = rest[off : off + n].view(p.shape).to(p.device, copy=True)
                off += n
            return t
        total = sum(p.numel() for p in params)
        for p in params:
            n = p.numel()
            opt.state[p]["step"] = torch.tensor(float(t))
            opt.state[p]["exp_avg"] = rest[off : off + n].view(p.shape).to(p.device, copy=True)
            opt.state[p]["exp_avg_sq"] = rest[total + off : total + off + n].view(p.shape).to(p.device, copy=True)
            off += n
        return t

    def flatten_optimizer(
        self,
        name: str,
        opt: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        t: int,
        out: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The optimizer's part of the state vector after t steps (into out
        if given)."""
        n = self.dim(name) - self.theta_dim
        if out is None:
            out = torch.empty(n, dtype=torch.float32)
        if out.numel() != n:
            raise ValueError(f"flatten the optimizer into {out.numel()} elements, its state has {n}")
        if name == "sgd":
            return out
        if t > INT_LIMIT:
            raise LayoutError(f"step count {t} exceeds 2^24 and cannot travel exactly as float32")
        keys = ["momentum_buffer"] if name in ("momentum", "nesterov") else ["exp_avg", "exp_avg_sq"]
        off = 0
        for key in keys:
            for p in params:
                v: Optional[torch.Tensor] = opt.state.get(p, {}).get(key)
                k = p.numel()
                # A parameter that never had a gradient has no buffer yet:
                # zero is what torch.optim starts from.
                if v is None:
                    out[off : off + k].zero_()
                else:
                    out[off : off + k].copy_(v.detach().reshape(-1))
                off += k
        out[off] = float(t)
        return out


def _step_count(v: torch.Tensor) -> int:
    f = float(v)
    if not (f >= 0 and f <= INT_LIMIT and f == int(f)):
        raise LayoutError(f"optim.step is {f}, not an integer in [0, 2^24]")
    return int(f)
