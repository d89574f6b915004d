"""The worker: one model file, the requests of docs/protocol.md.

Every request carries all the state it needs: the worker loads it into its
one module before computing, so a reply is a pure function of the request
(and of the model file, its data and the fingerprint), whatever came
before. Nothing a request does survives it.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Optional

import torch

from . import frame, layout, modelfile

VERSIONS = (1,)
"""The protocol versions this worker speaks."""

EVAL_CHUNK = 500
"""Examples per forward pass in evaluate. Fixed: the summation order of the
mean losses depends on it."""


class RequestError(Exception):
    """The request is wrong: the reply is "ok": false with this line."""


def step_seed(seed: int, k: int) -> int:
    """The seed of torch's generator before step k of a run seeded seed.

    A pure function of (seed, k), so a step that draws random numbers
    (dropout) draws the same ones in every chain it is part of, forward or
    backward, whatever the chain's first step: T_k stays a function of
    (k, s). SHA-256 rather than seed + k: neighbouring (seed, k) pairs must
    not give related streams.
    """
    d = hashlib.sha256(b"replay step seed\x00" + seed.to_bytes(8, "little") + k.to_bytes(8, "little")).digest()
    return int.from_bytes(d[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class OptimizerSpec:
    """The apply request's optimizer map, with torch.optim's meanings."""

    name: str
    momentum: float = 0.0
    dampening: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    @classmethod
    def parse(cls, m: Any) -> "OptimizerSpec":
        if not isinstance(m, dict):
            raise RequestError("optimizer must be a map")
        name = m.get("name")
        if name == "":
            name = "sgd"
        if name not in layout.OPTIMIZERS:
            raise RequestError(f"unknown optimizer {name!r} (want one of {', '.join(layout.OPTIMIZERS)})")
        vals = {}
        for key in ("momentum", "dampening", "beta1", "beta2", "eps", "weight_decay"):
            if key not in m:
                raise RequestError(f"optimizer map has no {key}")
            v = m[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise RequestError(f"optimizer {key} must be a finite number, not {v!r}")
            vals[key] = float(v)
        return cls(name=name, **vals)

    def build(self, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """A fresh torch.optim optimizer over params (empty state)."""
        try:
            if self.name == "sgd":
                # Plain SGD keeps no state: its momentum fields are ignored.
                return torch.optim.SGD(params, lr=lr, weight_decay=self.weight_decay)
            if self.name in ("momentum", "nesterov"):
                return torch.optim.SGD(
                    params,
                    lr=lr,
                    momentum=self.momentum,
                    dampening=self.dampening,
                    nesterov=self.name == "nesterov",
                    weight_decay=self.weight_decay,
                )
            cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
            return cls(
                params, lr=lr, betas=(self.beta1, self.beta2), eps=self.eps, weight_decay=self.weight_decay
            )
        except ValueError as e:  # torch.optim's own checks of its settings
            raise RequestError(f"optimizer {self.name}: {e}") from e


def _vector(req: dict, key: str, dtype: torch.dtype) -> torch.Tensor:
    b = req.get(key)
    if b is None and key in req:
        b = b""  # an empty Go slice may travel as nil
    if not isinstance(b, (bytes, bytearray)):
        raise RequestError(f"{key} must be msgpack bin")
    if len(b) % 4:
        raise RequestError(f"{key} has {len(b)} bytes, not a multiple of 4")
    if not b:
        return torch.zeros(0, dtype=dtype)
    if isinstance(b, bytearray):
        return torch.frombuffer(b, dtype=dtype)
    # No copy of a large state: the tensor over the read-only bytes is only
    # ever read (loaded into the module, copied into the optimizer).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        return torch.frombuffer(b, dtype=dtype)


def _int(req: dict, key: str, lo: int, hi: Optional[int] = None) -> int:
    v = req.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise RequestError(f"{key} must be an integer")
    if v < lo or (hi is not None and v > hi):
        raise RequestError(f"{key} {v} out of range")
    return v


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()


def _one_line(e: BaseException) -> str:
    s = f"{e}".strip() or type(e).__name__
    return " ".join(s.split())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_libraries() -> str:
    """The BLAS and LAPACK libraries mapped into this process (the kernels
    that compute the bits)."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if line.strip() else ""
                base = os.path.basename(p)
                if "blas" in base or "lapack" in base:
                    found.add(os.path.realpath(p))
    except OSError:
        return "unknown"
    return ",".join(sorted(found)) or "none"


def _cpu_capability() -> str:
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


class Worker:
    """One model file's computations. Not safe for concurrent use."""

    def __init__(self, path: str, threads: int = 1, device: str = "cpu"):
        self.threads = threads
        self.device = torch.device(device)
        self.mf = modelfile.load(path)
        self.data = modelfile.load_data(self.mf, self.device)
        torch.manual_seed(0)
        self.module = self._build()
        self.layout = layout.Layout.of(self.module)
        self.fingerprint = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": str(torch.get_num_threads()),
            "device": str(self.device),
            "cpu": _cpu_model(),
            "arch": platform.machine(),
            "cpu_capability": _cpu_capability(),
            "blas": _blas_libraries(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
            "deterministic": str(torch.are_deterministic_algorithms_enabled()).lower(),
            "model_sha256": self.mf.sha256,
            "data_sha256": self.data.sha256,
        }

    def _seed(self, s: int) -> None:
        """torch.manual_seed(s) for this worker's device. torch.manual_seed
        itself costs ≈ 0.2 ms (it visits every backend), 10% of a small
        CNN's step; the CPU generator alone takes 5 µs."""
        torch.default_generator.manual_seed(s)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(s)

    def _build(self) -> torch.nn.Module:
        m = self.mf.model()
        if not isinstance(m, torch.nn.Module):
            raise modelfile.ModelFileError(f"model() returned a {type(m).__name__}, not a torch.nn.Module")
        return m.to(self.device)

    def handle(self, req: dict) -> dict:
        """The reply's fields (without id and ok) to req; RequestError for a
        wrong request. Any other exception is a defect (of the worker or of
        the model file) and propagates."""
        op = req.get("op")
        fn: Optional[Callable[[dict], dict]] = {
            "hello": self.hello,
            "init": self.init,
            "apply": self.apply,
            "evaluate": self.evaluate,
        }.get(op)  # type: ignore[arg-type]
        if fn is None:
            raise RequestError(f"unknown op {op!r}")
        try:
            return fn(req)
        except layout.LayoutError as e:
            raise RequestError(str(e)) from e

    def hello(self, req: dict) -> dict:
        check_version(req)
        return {
            "version": VERSIONS[-1],
            "model": self.mf.name,
            "tensors": [e.describe() for e in self.layout.entries],
            "train": len(self.data.x_train),
            "test": len(self.data.x_test),
            "classes": self.data.classes,
            "fingerprint": self.fingerprint,
        }

    def init(self, req: dict) -> dict:
        seed = _int(req, "seed", 0, (1 << 64) - 1)
        torch.manual_seed(seed)
        m = self._build()
        if not layout.Layout.of(m).same(self.layout):
            raise RequestError("model() built a module of another layout than at start")
        return {"theta": _bytes(self.layout.flatten(m))}

    def apply(self, req: dict) -> dict:
        opt = OptimizerSpec.parse(req.get("optimizer"))
        state = _vector(req, "state", torch.float32)
        batches = _vector(req, "batches", torch.int32).to(torch.int64)
        steps = _vector(req, "steps", torch.int32)
        batch = _int(req, "batch", 1)
        seed = _int(req, "seed", 0, (1 << 64) - 1)
        lr = req.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise RequestError("lr must be a finite number")
        dim = self.layout.dim(opt.name)
        if state.numel() != dim:
            raise RequestError(f"state has {state.numel()} elements, the layout under {opt.name} {dim}")
        if batches.numel() != steps.numel() * batch:
            raise RequestError(f"{batches.numel()} batch indices for {steps.numel()} steps of batch {batch}")
        n = len(self.data.x_train)
        if batches.numel() and (int(batches.min()) < 0 or int(batches.max()) >= n):
            raise RequestError(f"a batch index is outside the training split [0, {n})")
        if steps.numel() and int(steps.min()) < 1:
            raise RequestError("step numbers start at 1")

        m = self.module
        self.layout.load(m, state[: self.layout.theta_dim])
        params = self.layout.params(m)
        for p in m.parameters():  # nothing of an earlier request survives
            p.grad = None
        optimizer = opt.build(params, float(lr))
        t = self.layout.load_optimizer(opt.name, optimizer, params, state[self.layout.theta_dim :])
        if t + steps.numel() > layout.INT_LIMIT:
            raise RequestError(f"step count {t + steps.numel()} would exceed 2^24")
        batches = batches.to(self.device)
        losses = []
        m.train()
        for j, k in enumerate(steps.tolist()):
            idx = batches[j * batch : (j + 1) * batch]
            self._seed(step_seed(seed, k))
            optimizer.zero_grad(set_to_none=True)
            loss = self.mf.loss(m(self.data.x_train[idx]), self.data.y_train[idx])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
        # The reply's bytes, written once (a ResNet-18 state is 45 MB).
        out = bytearray(4 * dim)
        v = torch.frombuffer(out, dtype=torch.float32)
        td = self.layout.theta_dim
        self.layout.flatten(m, v[:td])
        self.layout.flatten_optimizer(opt.name, optimizer, params, t + steps.numel(), v[td:])
        for p in params:
            p.grad = None
        return {"state": out, "losses": losses}

    def evaluate(self, req: dict) -> dict:
        theta = _vector(req, "theta", torch.float32)
        if theta.numel() != self.layout.theta_dim:
            raise RequestError(f"theta has {theta.numel()} elements, the layout {self.layout.theta_dim}")
        subsets = {}
        for split, x in (("train", self.data.x_train), ("test", self.data.x_test)):
            idx = _vector(req, split, torch.int32).to(torch.int64)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(x)):
                raise RequestError(f"a {split} index is outside the {split} split [0, {len(x)})")
            subsets[split] = idx.to(self.device)
        m = self.module
        self.layout.load(m, theta)
        m.eval()
        self._seed(0)  # a model that draws random numbers in eval mode draws the same ones
        train_loss, _ = self._measure(subsets["train"], self.data.x_train, self.data.y_train, False)
        test_loss, test_acc = self._measure(subsets["test"], self.data.x_test, self.data.y_test, True)
        return {"train_loss": train_loss, "test_loss": test_loss, "test_acc": test_acc}

    def _measure(self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, acc: bool) -> tuple[float, float]:
        """The mean loss over idx (the loss is taken to average over its
        batch) and the accuracy (NaN without classes)."""
        if idx.numel() == 0:
            return math.nan, math.nan
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, idx.numel(), EVAL_CHUNK):
                j = idx[i : i + EVAL_CHUNK]
                out = self.module(x[j])
                total += float(self.mf.loss(out, y[j])) * j.numel()
                if acc and self.data.classes:
                    correct += int((out.argmax(dim=1) == y[j]).sum())
        accuracy = correct / idx.numel() if acc and self.data.classes else math.nan
        return total / idx.numel(), accuracy


def check_version(req: dict) -> None:
    v = req.get("version")
    if v not in VERSIONS:
        raise RequestError(
            f"protocol version {v!r} not spoken; this worker speaks {', '.join(map(str, VERSIONS))}"
        )


def serve(rin: BinaryIO, wout: BinaryIO, make_worker: Callable[[], Worker], log: Any = sys.stderr) -> int:
    """Answers requests from rin on wout until shutdown or the end of rin;
    returns the exit status.

    A model file that fails to load is reported in every reply (the
    traceback goes to log once), so the daemon learns why from hello
    instead of retrying a crashing child. A protocol error (a frame that is
    not one well-formed request) ends the worker with status 2; a defect
    while computing propagates (the caller prints the traceback and exits
    non-zero).
    """
    worker: Optional[Worker] = None
    load_error = ""
    try:
        worker = make_worker()
    except Exception as e:
        traceback.print_exc(file=log)
        load_error = f"load model file: {type(e).__name__}: {_one_line(e)}"
    while True:
        try:
            req = frame.read_frame(rin)
        except frame.ProtocolError as e:
            print(f"replay_worker: protocol error: {e}", file=log, flush=True)
            return 2
        if req is None:
            return 0
        rid = req.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int) or not isinstance(req.get("op"), str):
            print("replay_worker: protocol error: a request without an integer id or a string op", file=log, flush=True)
            return 2
        if req["op"] == "shutdown":
            frame.write_frame(wout, {"id": rid, "ok": True})
            return 0
        try:
            if req["op"] == "hello":
                check_version(req)
            if worker is None:
                raise RequestError(load_error)
            reply = worker.handle(req)
            reply.update(id=rid, ok=True)
        except RequestError as e:
            reply = {"id": rid, "ok": False, "error": _one_line(e)}
        frame.write_frame(wout, reply)
