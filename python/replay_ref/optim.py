"""torch.optim built from replay's optimizer settings, and its state under
the export names of docs/protocol.md ("The optimizer state").

The settings mean exactly what they mean to torch.optim (issue 13):

- sgd:      SGD(lr, weight_decay)
- momentum: SGD(lr, momentum, dampening, weight_decay)
- nesterov: SGD(lr, momentum, dampening=0, weight_decay, nesterov=True)
- adam:     Adam(lr, betas=(beta1, beta2), eps, weight_decay)
- adamw:    AdamW(lr, betas=(beta1, beta2), eps, weight_decay)

Defaults are torch.optim's (betas 0.9/0.999, eps 1e-8, dampening 0,
weight_decay 0 — 0.01 for AdamW); momentum has no useful default (torch's
is 0) and must be given for momentum and nesterov.

State names: ``<i>`` is the parameter's index among the parameters the
optimizer updates (torch.optim's state_dict index): momentum/nesterov export
optim.state.<i>.momentum_buffer for every i, then optim.step; adam/adamw all
optim.state.<i>.exp_avg, then all optim.state.<i>.exp_avg_sq, then
optim.step; sgd nothing. optim.step is t, the number of steps the state has
taken (torch's SGD keeps no count: the chain's length is t). A momentum
buffer torch has not created yet (t = 0) is zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from .errors import InputError

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw")


@dataclass(frozen=True)
class Spec:
    name: str
    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    @staticmethod
    def make(name: str, lr: float, momentum: Optional[float] = None, dampening: Optional[float] = None,
             beta1: Optional[float] = None, beta2: Optional[float] = None, eps: Optional[float] = None,
             weight_decay: Optional[float] = None) -> "Spec":
        """Validates the settings and fills torch.optim's defaults."""
        if name not in NAMES:
            raise InputError(f"--optimizer {name!r}: want one of {', '.join(NAMES)}")
        if not lr > 0:
            raise InputError(f"--lr {lr}: must be positive")
        sgdlike, adamlike = name in ("sgd", "momentum", "nesterov"), name in ("adam", "adamw")
        for flag, v, ok in (("momentum", momentum, name in ("momentum", "nesterov")),
                            ("dampening", dampening, name in ("momentum", "nesterov")),
                            ("beta1", beta1, adamlike), ("beta2", beta2, adamlike), ("eps", eps, adamlike)):
            if v is not None and not ok:
                raise InputError(f"--{flag} does not apply to --optimizer {name}")
        if name in ("momentum", "nesterov") and momentum is None:
            raise InputError(f"--optimizer {name} needs --momentum")
        if name == "nesterov" and dampening:
            raise InputError("--optimizer nesterov needs --dampening 0 (torch.optim.SGD's rule)")
        wd = weight_decay if weight_decay is not None else (0.01 if name == "adamw" else 0.0)
        s = Spec(name, lr,
                 momentum=momentum if momentum is not None else 0.0,
                 dampening=dampening if dampening is not None else 0.0,
                 beta1=beta1 if beta1 is not None else 0.9,
                 beta2=beta2 if beta2 is not None else 0.999,
                 eps=eps if eps is not None else 1e-8,
                 weight_decay=wd)
        if sgdlike and not 0 <= s.momentum < 1 or name in ("momentum", "nesterov") and s.momentum == 0:
            raise InputError(f"--momentum {s.momentum}: want 0 < momentum < 1")
        if adamlike and not (0 <= s.beta1 < 1 and 0 <= s.beta2 < 1 and s.eps > 0):
            raise InputError(f"--beta1 {s.beta1} --beta2 {s.beta2} --eps {s.eps}: want betas in [0, 1), eps > 0")
        if s.weight_decay < 0:
            raise InputError(f"--weight-decay {s.weight_decay}: must not be negative")
        return s

    def build(self, params: List[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.name in ("momentum", "nesterov"):
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                                   weight_decay=self.weight_decay, nesterov=self.name == "nesterov")
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps, weight_decay=self.weight_decay)


def state_names(name: str, n_params: int) -> List[str]:
    """The export names of the optimizer state, in layout order."""
    if name == "sgd":
        return []
    if name in ("momentum", "nesterov"):
        return [f"optim.state.{i}.momentum_buffer" for i in range(n_params)] + ["optim.step"]
    return ([f"optim.state.{i}.exp_avg" for i in range(n_params)]
            + [f"optim.state.{i}.exp_avg_sq" for i in range(n_params)] + ["optim.step"])


def named_state(spec: Spec, opt: torch.optim.Optimizer, params: List[torch.nn.Parameter], t: int) -> Dict[str, np.ndarray]:
    """The optimizer's state after t steps under the export names (float64)."""
    out: Dict[str, np.ndarray] = {}
    if spec.name == "sgd":
        return out
    keys = ("momentum_buffer",) if spec.name in ("momentum", "nesterov") else ("exp_avg", "exp_avg_sq")
    for key in keys:
        for i, p in enumerate(params):
            st = opt.state.get(p, {})
            v = st.get(key)
            out[f"optim.state.{i}.{key}"] = (np.zeros(tuple(p.shape)) if v is None
                                             else v.detach().to(torch.float64).numpy().copy())
            if "step" in st and int(float(st["step"])) != t:
                raise AssertionError(f"torch.optim counted {float(st['step'])} steps, the chain {t}")
    out["optim.step"] = np.array(float(t))
    return out
