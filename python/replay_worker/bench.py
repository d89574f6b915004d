"""Benchmark: the protocol's overhead per job and a model's step time.

    /usr/bin/python3 -m replay_worker.bench [--model examples/cnn_fmnist.py]
        [--window 64] [--batch 8] [--reps 7] [--optimizer sgd]

Times one job (an apply of a chain of --window steps) through a worker
child over pipes, as the daemon sends it, against the same chain in plain
PyTorch in this process (model, torch.optim, the steps; no state loading,
no serialisation, no per-step seeding): the difference is what the
protocol and the worker cost. A third column sends the same request to a
worker.Worker in this process (the worker's cost without pipes and msgpack). Both sides run one thread and use
deterministic algorithms; the repetitions alternate between the two and
the minimum of each is reported, with the median (the machine is shared: the minimum is
the least disturbed run), and the mean CPU time of each (the driver's
process time plus the child's utime + stime from /proc: less disturbed by
other processes than wall time). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import array
import os
import subprocess
import sys
import time

import torch

from . import frame, modelfile, worker

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay_worker.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "cnn_fmnist.py"))
    ap.add_argument("--window", type=int, default=64, help="steps per job (W)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum", "adam"))
    args = ap.parse_args(argv)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    mf = modelfile.load(args.model)
    data = modelfile.load_data(mf, torch.device("cpu"))
    n_train = len(data.x_train)
    W, B = args.window, args.batch
    batches = [[(17 * (j * B + i) + 3) % n_train for i in range(B)] for j in range(W)]
    opt = {"name": args.optimizer, "momentum": 0.9 if args.optimizer == "momentum" else 0.0, "dampening": 0.0,
           "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}

    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    child = subprocess.Popen([sys.executable, "-m", "replay_worker", args.model], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    rid = 0

    def call(msg):
        nonlocal rid
        rid += 1
        frame.write_frame(child.stdin, dict(msg, id=rid))
        r = frame.read_frame(child.stdout)
        if not r or not r.get("ok"):
            raise SystemExit(f"bench: worker replied {r}")
        return r

    h = call({"op": "hello", "version": 1})
    theta = call({"op": "init", "seed": 1})["theta"]
    n_theta = len(theta) // 4
    n_param = sum(_prod(t["shape"]) for t in h["tensors"] if t["param"])
    extra = {"sgd": 0, "momentum": n_param + 1, "adam": 2 * n_param + 1}[args.optimizer]
    state = theta + bytes(4 * extra)
    req = {"op": "apply", "state": state, "batches": array.array("i", [i for b in batches for i in b]).tobytes(),
           "steps": array.array("i", range(W, 0, -1)).tobytes(), "batch": B, "seed": 1, "lr": args.lr,
           "optimizer": opt}

    cpu = {"protocol": 0.0, "plain": 0.0, "inproc": 0.0}

    def protocol_job() -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        call(req)
        t = time.perf_counter() - t0
        cpu["protocol"] += time.process_time() - c0
        return t

    torch.manual_seed(1)
    module = mf.model()
    idx = [torch.tensor(b) for b in batches]

    def plain_job() -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        if args.optimizer == "sgd":
            o = torch.optim.SGD(module.parameters(), lr=args.lr)
        elif args.optimizer == "momentum":
            o = torch.optim.SGD(module.parameters(), lr=args.lr, momentum=0.9)
        else:
            o = torch.optim.Adam(module.parameters(), lr=args.lr)
        module.train()
        for b in idx:
            o.zero_grad(set_to_none=True)
            loss = mf.loss(module(data.x_train[b]), data.y_train[b])
            loss.backward()
            o.step()
            loss.item()
        t = time.perf_counter() - t0
        cpu["plain"] += time.process_time() - c0
        return t

    # The same request to a Worker in this process: the worker's own cost
    # (state in and out, per-step seeds) without the pipes and msgpack.
    inproc = worker.Worker(args.model)
    inreq = dict(req, id=0)

    def inproc_job() -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        inproc.handle(inreq)
        t = time.perf_counter() - t0
        cpu["inproc"] += time.process_time() - c0
        return t

    protocol_job(), plain_job(), inproc_job()  # warm up
    tp, tq, ti = [], [], []
    for k in cpu:
        cpu[k] = 0.0
    child_cpu0 = _cpu_seconds(child.pid)
    for _ in range(args.reps):
        tp.append(protocol_job())
        tq.append(plain_job())
        ti.append(inproc_job())
    cpu["protocol"] += _cpu_seconds(child.pid) - child_cpu0  # the child idles between its jobs
    call({"op": "shutdown"})
    child.wait()
    p, q = min(tp), min(tq)
    print(f"model {h['model']}: θ {n_theta} floats, window {W}, batch {B}, {args.optimizer}, {args.reps} reps, "
          f"torch {torch.__version__}, 1 thread")
    print(f"plain PyTorch chain: {q * 1e3:.2f} ms/job ({q / W * 1e3:.3f} ms/step)  "
          f"[median {sorted(tq)[len(tq) // 2] * 1e3:.2f}]")
    print(f"through the protocol: {p * 1e3:.2f} ms/job ({p / W * 1e3:.3f} ms/step)  "
          f"[median {sorted(tp)[len(tp) // 2] * 1e3:.2f}]")
    i = min(ti)
    print(f"worker in process:    {i * 1e3:.2f} ms/job ({i / W * 1e3:.3f} ms/step)  "
          f"[median {sorted(ti)[len(ti) // 2] * 1e3:.2f}]")
    print(f"protocol overhead (wall, minima): {(p - q) * 1e3:.2f} ms/job = {100 * (p - q) / q:+.1f}% of the plain chain")
    cp, cq, ci = (cpu[k] / args.reps for k in ("protocol", "plain", "inproc"))
    print(f"CPU time per job (mean; driver and child): plain {cq * 1e3:.2f} ms, in process {ci * 1e3:.2f} ms, "
          f"through the protocol {cp * 1e3:.2f} ms")
    print(f"protocol overhead (CPU): {(cp - cq) * 1e3:.2f} ms/job = {100 * (cp - cq) / cq:+.1f}% of the plain chain")
    return 0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc; resolution one clock tick,
    summed over all repetitions)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    sys.exit(main())
