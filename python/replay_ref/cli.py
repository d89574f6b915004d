"""The command line: python3 -m replay_ref check ….

    python3 -m replay_ref check (--model mlp:32 | --model-file FILE)
        --theta0 F.safetensors --batches F.npy [--data DIR] [--loss L]
        --optimizer sgd|momentum|nesterov|adam|adamw --lr LR
        [--momentum M] [--dampening D] [--beta1 B1] [--beta2 B2] [--eps E]
        [--weight-decay WD] [--with-state] [--anchor R:forward|backward …]
        --check forward:N=F.safetensors --check backward:N=F.safetensors …

Each --check names an exported iterate: forward:N is θ_N (batches 1..N),
backward:N is θ̃_N (batches N, N−1, …, 1; with --anchor R:FROM, batches N,
…, R+1 from the anchor's start point for N > R, DESIGN.md §1's windowed
reset). With --with-state every file must
also hold the optimizer state (replayctl export --with-state); without it,
state tensors in a file are compared when present. One line per tensor;
exit 0 when all are within tolerance (tolerance.py), 1 otherwise, 2 on bad
input (one line on stderr).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import chain, data, models, optim, safetensors, tolerance
from .errors import InputError

_CHECK = re.compile(r"^(forward|backward):(\d+)=(.+)$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise InputError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python3 -m replay_ref", description="replay's iterates recomputed by plain PyTorch")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    c = sub.add_parser("check", help="recompute exported forward/backward iterates and compare")
    m = c.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", help="mlp:<widths> (nn's MLP: 784 inputs, ReLU, 10 outputs)")
    m.add_argument("--model-file", help="a model file of docs/protocol.md (model(), datasets(), loss)")
    c.add_argument("--theta0", required=True, help="θ_0 (replayctl export --step 0 --kind forward)")
    c.add_argument("--batches", required=True, help="the batch log (replayctl export --batches)")
    c.add_argument("--data", default=data.DEFAULT_DIR, help="Fashion-MNIST IDX directory (with --model)")
    c.add_argument("--loss", default="cross-entropy", help="cross-entropy or mse (with --model)")
    c.add_argument("--optimizer", default="sgd", help="|".join(optim.NAMES))
    c.add_argument("--lr", type=float, required=True)
    for f in ("momentum", "dampening", "beta1", "beta2", "eps", "weight-decay"):
        c.add_argument("--" + f, type=float, default=None)
    c.add_argument("--with-state", action="store_true", help="require the optimizer state in every file")
    c.add_argument("--check", action="append", default=[], metavar="KIND:N=FILE", required=True)
    c.add_argument("--anchor", action="append", default=[], metavar="R:forward|backward",
                   help="the run's backward anchors after the initial one, in order (window strategy, resets): "
                        "θ̃_n for r < n ≤ the next anchor is T_{r+1}∘…∘T_n of the anchor's start point, "
                        "the forward or the backward state at r (recomputed here from θ_0, never read)")
    return p


def _checks(specs: Sequence[str], steps: int) -> List[Tuple[str, int, str]]:
    out = []
    for s in specs:
        m = _CHECK.match(s)
        if not m:
            raise InputError(f"--check {s!r}: want forward:N=FILE or backward:N=FILE")
        kind, n, path = m.group(1), int(m.group(2)), m.group(3)
        if kind == "backward" and n < 1 or n > steps:
            raise InputError(f"--check {s!r}: step {n} outside {0 if kind == 'forward' else 1}..{steps} (the batch log has {steps} steps)")
        out.append((kind, n, path))
    return out


def _anchors(specs: Sequence[str], steps: int) -> List[Tuple[int, str]]:
    out: List[Tuple[int, str]] = []
    for s in specs:
        r, _, frm = s.partition(":")
        try:
            step = int(r)
        except ValueError:
            step = -1
        if frm not in ("forward", "backward") or not 0 < step < steps or out and step <= out[-1][0]:
            raise InputError(f"--anchor {s!r}: want R:forward or R:backward with 0 < R < {steps}, in increasing R")
        out.append((step, frm))
    return out


def _batches(path: str) -> np.ndarray:
    try:
        b = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--batches {path}: {e}") from e
    if b.dtype != np.int64 or b.ndim != 2 or b.shape[0] == 0:
        raise InputError(f"--batches {path}: {b.dtype} {list(b.shape)}, want int64 [steps, batch]")
    return b


def _setup(a: argparse.Namespace):
    """(make_model, data, loss) for --model or --model-file."""
    if a.model is not None:
        models.parse_widths(a.model)  # bad spec: InputError before loading data
        (x, y), _ = _fmnist_pixels(a.data)
        loss = models.default_loss(a.loss)
        target = models.mse_targets if a.loss == "mse" else (lambda t: t)
        return (lambda: models.mlp(a.model)), chain.Data(x, y, target), loss
    mf = models.ModelFile(a.model_file)
    try:
        (x, y), _ = mf.datasets()
    except Exception as e:
        raise InputError(f"--model-file {a.model_file}: datasets() failed: {type(e).__name__}: {e}") from e
    return mf.model, chain.Data(x, y), mf.loss if mf.loss is not None else torch.nn.CrossEntropyLoss()


def _fmnist_pixels(d: str):
    """The training split as uint8 pixels (scaled per batch: the whole split
    as float32 would be 188 MB for a few hundred images used)."""
    img = data.read_idx(data._find(d, "train-images-idx3-ubyte"))
    lab = data.read_idx(data._find(d, "train-labels-idx1-ubyte"))
    if img.shape[0] != lab.shape[0]:
        raise InputError(f"{d}: {img.shape[0]} training images but {lab.shape[0]} labels")
    return (img.reshape(img.shape[0], -1), lab.astype(np.int64)), None


def check(a: argparse.Namespace, out=None) -> int:
    out = out if out is not None else sys.stdout
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    spec = optim.Spec.make(a.optimizer, a.lr, a.momentum, a.dampening, a.beta1, a.beta2, a.eps, a.weight_decay)
    batches = _batches(a.batches)
    checks = _checks(a.check, batches.shape[0])
    theta0 = safetensors.read(a.theta0)
    files = {path: safetensors.read(path) for _, _, path in checks}
    make_model, d, loss = _setup(a)
    if batches.min() < 0 or batches.max() >= d.n:
        raise InputError(f"--batches {a.batches}: indices {batches.min()}..{batches.max()} outside the training split 0..{d.n - 1}")

    # One forward chain with a snapshot at every forward check; one chain
    # per backward check. Each in float32 (PyTorch's result) and float64
    # (the shadow that measures float32's error, tolerance.py).
    fwd = sorted({n for k, n, _ in checks if k == "forward"})
    ref: Dict[Tuple[str, int], Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = {}
    if fwd:
        order = list(batches[: fwd[-1]])
        r32 = chain.run(make_model, theta0, d, loss, spec, order, fwd, torch.float32)
        r64 = chain.run(make_model, theta0, d, loss, spec, order, fwd, torch.float64)
        for n in fwd:
            ref[("forward", n)] = (r32[n], r64[n])
    # Backward: θ̃_n is the chain of batches n, n−1, …, r+1 from the start
    # point of the last anchor r < n (θ_0 and a fresh state for r = 0): the
    # forward state at r, or θ̃_r itself under the anchor before (recursion,
    # memoized per anchor and dtype).
    anchors = _anchors(a.anchor, batches.shape[0])
    starts: Dict[Tuple[int, torch.dtype], Dict[str, np.ndarray]] = {}

    def backward(n: int, dtype: torch.dtype) -> Dict[str, np.ndarray]:
        i = max((j for j, (r, _) in enumerate(anchors) if r < n), default=-1)
        r, start = (0, None) if i < 0 else (anchors[i][0], start_of(i, dtype))
        order = [batches[k - 1] for k in range(n, r, -1)]
        return chain.run(make_model, theta0, d, loss, spec, order, [len(order)], dtype, start=start)[len(order)]

    def start_of(i: int, dtype: torch.dtype) -> Dict[str, np.ndarray]:
        if (i, dtype) not in starts:
            r, frm = anchors[i]
            if frm == "forward":
                starts[(i, dtype)] = chain.run(make_model, theta0, d, loss, spec, list(batches[:r]), [r], dtype)[r]
            else:
                starts[(i, dtype)] = backward(r, dtype)
        return starts[(i, dtype)]

    for n in sorted({n for k, n, _ in checks if k == "backward"}):
        ref[("backward", n)] = (backward(n, torch.float32), backward(n, torch.float64))

    bad = total = 0
    worst = 0.0
    for kind, n, path in checks:
        got = files[path]
        s32, s64 = ref[(kind, n)]
        state = [k for k in s32 if k.startswith("optim.")]
        theta = [k for k in s32 if not k.startswith("optim.")]
        names = theta + state
        extra = [k for k in got if k not in s32]
        if extra:
            raise InputError(f"{path}: tensors {extra} are not in the model or --optimizer {spec.name}'s state")
        for k in names:
            total += 1
            where = f"{kind}:{n} {k}"
            if k not in got:
                if k in state and not a.with_state:
                    total -= 1
                    continue
                bad += 1
                print(f"{where}: MISSING from {path}", file=out)
                continue
            g = got[k]
            if list(g.shape) != list(s32[k].shape):
                bad += 1
                print(f"{where}: shape {list(g.shape)}, PyTorch's is {list(s32[k].shape)}: FAIL", file=out)
                continue
            if k == "optim.step":
                ok = float(g) == float(s32[k])
                bad += not ok
                print(f"{where}: {float(g):g}, torch.optim's t = {float(s32[k]):g}: {'ok' if ok else 'FAIL'}", file=out)
                continue
            c = tolerance.compare(g, s32[k], s64[k], n)
            bad += not c["ok"]
            if c["ok"] and np.isfinite(c["x"]):
                worst = max(worst, c["abs"] / c["tol"] if c["tol"] else 0.0)
            print(f"{where} {list(g.shape)}: max|Δ| {c['abs']:.3g} rel {c['rel']:.3g} E {c['e32']:.3g} ×E {c['x']:.3g} "
                  f"tol {c['tol']:.3g}: {'ok' if c['ok'] else 'FAIL ' + c['why']}".rstrip(), file=out)
    if bad:
        print(f"replay_ref: {bad} of {total} tensors outside tolerance", file=out)
        return 1
    print(f"replay_ref: all {total} tensors of {len(checks)} checks within tolerance "
          f"(largest error {worst:.2g} of its tolerance; {spec.name}, {len(batches)} steps)", file=out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        a = _parser().parse_args(argv)
        return check(a)
    except InputError as e:
        print(f"replay_ref: {e}", file=sys.stderr)
        return 2
