"""The models the reference rebuilds.

- ``mlp:<widths>``: nn's MLP exactly (nn/model.go): torch.nn.Sequential of
  Linear, ReLU, …, Linear from 784 inputs to 10 outputs, so its state_dict
  names are replay's export names (0.weight [out, in], 0.bias, 2.weight, …).
  Widths as nn parses them: comma-separated groups "W" or "WxR" (R layers of
  width W): mlp:500x5, mlp:32, mlp:64x2,32.
- ``--model-file FILE``: a model file of docs/protocol.md: model() returns
  the torch.nn.Module, datasets() the splits, an optional ``loss``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, List, Optional, Tuple

import torch

from .errors import InputError

INPUTS, CLASSES = 784, 10


def parse_widths(spec: str) -> List[int]:
    if not spec.startswith("mlp:"):
        raise InputError(f"--model {spec!r}: want mlp:<widths> (e.g. mlp:32, mlp:500x5) or --model-file")
    widths: List[int] = []
    for group in spec[len("mlp:") :].split(","):
        w, _, r = group.partition("x")
        try:
            width, reps = int(w), int(r) if r else 1
        except ValueError:
            raise InputError(f"--model {spec!r}: group {group!r} is not W or WxR") from None
        if width <= 0 or reps <= 0:
            raise InputError(f"--model {spec!r}: widths and repeats must be positive")
        widths += [width] * reps
    return widths


def mlp(spec: str) -> torch.nn.Module:
    layers: List[torch.nn.Module] = []
    fan_in = INPUTS
    for w in parse_widths(spec):
        layers += [torch.nn.Linear(fan_in, w), torch.nn.ReLU()]
        fan_in = w
    layers.append(torch.nn.Linear(fan_in, CLASSES))
    return torch.nn.Sequential(*layers)


class ModelFile:
    """A loaded model file: model(), datasets() and the loss."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise InputError(f"--model-file {path}: no such file")
        spec = importlib.util.spec_from_file_location("replay_ref_model", path)
        if spec is None or spec.loader is None:
            raise InputError(f"--model-file {path}: not a Python module")
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # the user's code: report it in one line
            raise InputError(f"--model-file {path}: import failed: {type(e).__name__}: {e}") from e
        for fn in ("model", "datasets"):
            if not callable(getattr(mod, fn, None)):
                raise InputError(f"--model-file {path}: defines no {fn}() (see docs/protocol.md)")
        self.path = path
        self.model: Callable[[], torch.nn.Module] = mod.model
        self.datasets = mod.datasets
        self.loss: Optional[torch.nn.Module] = getattr(mod, "loss", None)


def default_loss(name: str) -> torch.nn.Module:
    if name == "cross-entropy":
        return torch.nn.CrossEntropyLoss()
    if name == "mse":
        return torch.nn.MSELoss()
    raise InputError(f"--loss {name!r}: want cross-entropy or mse")


def mse_targets(y: torch.Tensor, classes: int = CLASSES) -> torch.Tensor:
    """One-hot float targets, as nn's MSE on a classification data set."""
    return torch.nn.functional.one_hot(y, classes).to(torch.float32)


def split_state(module: torch.nn.Module) -> Tuple[List[str], List[str]]:
    """(names of the parameters the optimizer updates, in order; names of
    every floating-point or integer tensor of the state_dict, in order)."""
    params = [n for n, p in module.named_parameters() if p.requires_grad]
    return params, list(module.state_dict().keys())
