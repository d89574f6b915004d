"""Loading a model file: a Python module with model(), datasets() and an
optional loss (and optional name and classes)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import torch


class ModelFileError(Exception):
    """The model file is missing something or returns the wrong things."""


@dataclass
class ModelFile:
    """What the worker reads of a model file."""

    path: str
    module: ModuleType
    name: str
    model: Callable[[], torch.nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sha256: str


def load(path: str) -> ModelFile:
    """Imports the model file at path.

    The file's directory goes first on sys.path, as when Python runs a
    script, so a model file may import its neighbours.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path}: no such file")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    stem = os.path.splitext(os.path.basename(path))[0]
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(f"replay_model_{stem}", path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"model file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("model", "datasets"):
        if not callable(getattr(module, attr, None)):
            raise ModelFileError(f"model file {path}: no function {attr}()")
    loss: Any = getattr(module, "loss", None)
    if loss is None:
        loss = torch.nn.CrossEntropyLoss()
    elif isinstance(loss, type) and issubclass(loss, torch.nn.Module):
        loss = loss()  # `loss = torch.nn.MSELoss` means its default instance
    if not callable(loss):
        raise ModelFileError(f"model file {path}: loss is not callable")
    name = getattr(module, "name", None)
    if not isinstance(name, str) or not name:
        name = stem
    return ModelFile(path=path, module=module, name=name, model=module.model, loss=loss, sha256=digest)


@dataclass
class Data:
    """A model file's data set: examples first, on the worker's device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    sha256: str


def _tensor(v: Any, what: str) -> torch.Tensor:
    t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
    if t.dim() == 0:
        raise ModelFileError(f"datasets(): {what} is a scalar, not examples first")
    return t.contiguous()


def load_data(mf: ModelFile, device: torch.device) -> Data:
    """Calls the model file's datasets() and checks what it returns."""
    got = mf.module.datasets()
    try:
        (x_train, y_train), (x_test, y_test) = got
    except (TypeError, ValueError) as e:
        raise ModelFileError("datasets() must return ((x_train, y_train), (x_test, y_test))") from e
    parts = {
        "x_train": _tensor(x_train, "x_train"),
        "y_train": _tensor(y_train, "y_train"),
        "x_test": _tensor(x_test, "x_test"),
        "y_test": _tensor(y_test, "y_test"),
    }
    for split in ("train", "test"):
        nx, ny = len(parts["x_" + split]), len(parts["y_" + split])
        if nx != ny:
            raise ModelFileError(f"datasets(): {split} split has {nx} inputs and {ny} targets")
    if len(parts["x_train"]) == 0:
        raise ModelFileError("datasets(): the training split is empty")
    # The content hash names the data in the fingerprint (remote workers
    # must compute on the same data): dtype, shape and bytes of each part.
    h = hashlib.sha256()
    for key, t in parts.items():
        h.update(f"{key} {t.dtype} {list(t.shape)}\n".encode())
        h.update(t.cpu().numpy().data if t.dtype != torch.bfloat16 else t.float().cpu().numpy().data)
    classes = getattr(mf.module, "classes", None)
    if classes is None:
        classes = 0
        ys = (parts["y_train"], parts["y_test"])
        if all(y.dim() == 1 and not y.is_floating_point() and not y.is_complex() for y in ys):
            classes = int(max(int(y.max()) if len(y) else -1 for y in ys)) + 1
    elif not isinstance(classes, int) or classes < 0:
        raise ModelFileError(f"model file: classes must be an integer ≥ 0, not {classes!r}")
    return Data(
        x_train=parts["x_train"].to(device),
        y_train=parts["y_train"].to(device),
        x_test=parts["x_test"].to(device),
        y_test=parts["y_test"].to(device),
        classes=classes,
        sha256=h.hexdigest(),
    )
