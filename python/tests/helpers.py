"""Shared pieces of the worker's tests: model paths, requests, a child
worker over pipes, and plain torch.optim chains to compare against."""

from __future__ import annotations

import array
import os
import subprocess
import sys
from collections import deque
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYTHON_DIR)
MODELS = os.path.join(HERE, "models")
EXAMPLES = os.path.join(REPO, "examples")
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

from replay_worker import frame  # noqa: E402

# Debian's interpreter: the one with python3-torch (see python/replay_worker).
PYTHON = sys.executable

OPTIMIZERS = {
    # name: the request's optimizer map, with settings that exercise every
    # term (dampening, weight decay) where torch allows it.
    "sgd": {"name": "sgd", "momentum": 0.0, "dampening": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
    "momentum": {"name": "momentum", "momentum": 0.9, "dampening": 0.25, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.001},
    "nesterov": {"name": "nesterov", "momentum": 0.8, "dampening": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adam": {"name": "adam", "momentum": 0.0, "dampening": 0.0, "beta1": 0.85, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.001},
    "adamw": {"name": "adamw", "momentum": 0.0, "dampening": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.05},
}


def torch_optimizer(name: str, params, lr: float):
    """The torch.optim optimizer OPTIMIZERS[name] means, built directly."""
    import torch

    o = OPTIMIZERS[name]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=o["weight_decay"])
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=o["momentum"], dampening=o["dampening"],
            nesterov=name == "nesterov", weight_decay=o["weight_decay"],
        )
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])


def i32(values) -> bytes:
    return array.array("i", list(values)).tobytes()


def f32(t) -> bytes:
    return t.detach().to("cpu").float().contiguous().numpy().tobytes()


def vec(b: bytes):
    import torch

    return torch.frombuffer(bytearray(b), dtype=torch.float32)


def apply_request(state: bytes, batches: list[list[int]], steps: list[int], opt: str, lr: float = 0.05, seed: int = 3, rid: int = 1) -> dict:
    return {
        "op": "apply", "id": rid, "state": state,
        "batches": i32(i for b in batches for i in b), "steps": i32(steps),
        "batch": len(batches[0]), "seed": seed, "lr": lr, "optimizer": dict(OPTIMIZERS[opt]),
    }


def zero_state(theta: bytes, dim: int) -> bytes:
    """θ followed by the zero optimizer state (what the daemon appends)."""
    return theta + bytes(4 * dim - len(theta))


class Child:
    """A worker process spoken to over pipes, as the daemon does."""

    def __init__(self, model: str, *args: str, env: Optional[dict] = None):
        e = dict(os.environ)
        e["PYTHONPATH"] = PYTHON_DIR
        e.update(env or {})
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "replay_worker", model, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
        )
        self.stderr_lines: deque[str] = deque(maxlen=200)
        import threading

        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.id = 0

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace").rstrip("\n"))

    def call(self, msg: dict) -> Optional[dict]:
        self.id += 1
        msg = dict(msg, id=self.id)
        frame.write_frame(self.proc.stdin, msg)
        reply = frame.read_frame(self.proc.stdout)
        if reply is not None and reply.get("id") != self.id:
            raise AssertionError(f"reply id {reply.get('id')} to request {self.id}")
        return reply

    def wait(self, timeout: float = 60) -> int:
        """The exit status (the deadline bounds a hung child)."""
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return rc

    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=60)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
