"""python3 -m replay_ref.lrscan: forward training at a few learning rates.

How make reproduce's Adam rate was chosen (scripts/reproduce.sh, ADAM_LR):

    replayctl run start --name h --preset fmnist-mlp --steps 1 --reset-at none
    replayctl export --run h --step 0 --kind forward --out he0.safetensors
    cd python && /usr/bin/python3 -m replay_ref.lrscan --model mlp:500x5 \\
        --theta0 he0.safetensors --optimizer adam --steps 2000 1e-5 3e-5 1e-4 3e-4 1e-3

From θ_0, torch.optim fed batches of 8 from one random permutation of the
training split (numpy seed 1); at every quarter of the run the mean
training loss on the first 1000 training images and the accuracy on the
first 1000 test images. One line per rate.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from . import chain, cli, data, models, optim, safetensors
from .errors import InputError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m replay_ref.lrscan")
    p.add_argument("--model", default="mlp:500x5")
    p.add_argument("--theta0", required=True)
    p.add_argument("--data", default=data.DEFAULT_DIR)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("lrs", type=float, nargs="+")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        t0 = safetensors.read(a.theta0)
        (x, y), _ = cli._fmnist_pixels(a.data)
        ti = data.read_idx(data._find(a.data, "t10k-images-idx3-ubyte"))
        tl = data.read_idx(data._find(a.data, "t10k-labels-idx1-ubyte"))
    except InputError as e:
        print(f"replay_ref.lrscan: {e}", file=sys.stderr)
        return 2
    d = chain.Data(x, y)
    xt, yt = torch.from_numpy(data.scale(ti[:1000])), torch.from_numpy(tl[:1000].astype(np.int64))
    xtr, ytr = d.batch(np.arange(1000), torch.float32)
    order = np.random.default_rng(1).permutation(d.n)[: a.steps * a.batch].reshape(a.steps, a.batch)
    lf = torch.nn.CrossEntropyLoss()
    for lr in a.lrs:
        m = models.mlp(a.model)
        chain.load_theta(m, t0, a.theta0)
        opt = optim.Spec.make(a.optimizer, lr).build(list(m.parameters()))
        start, line = time.time(), []
        for k in range(1, a.steps + 1):
            xb, yb = d.batch(order[k - 1], torch.float32)
            opt.zero_grad()
            lf(m(xb), yb).backward()
            opt.step()
            if k % max(a.steps // 4, 1) == 0 or k == a.steps:
                with torch.no_grad():
                    line.append(f"{k}: train loss {float(lf(m(xtr), ytr)):.3f} test acc {float((m(xt).argmax(1) == yt).float().mean()):.3f}")
        print(f"{a.optimizer} lr {lr:g} ({(time.time() - start) / a.steps * 1000:.1f} ms/step): " + "; ".join(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
