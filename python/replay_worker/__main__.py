"""python -m replay_worker FILE [--threads N] [--device cpu|cuda]

Serves the operator protocol (docs/protocol.md) for the model file FILE on
stdin and stdout. Logs go to stderr; nothing else may reach stdout, so the
protocol's descriptors are moved aside first and fd 1 points at stderr
for the model file's prints (and fd 0 at /dev/null).
"""

import argparse
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay_worker", description=__doc__.splitlines()[0])
    ap.add_argument("file", help="the model file: a module with model(), datasets() and optionally loss")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if sys.byteorder != "little":
        print("replay_worker: the protocol's vectors are little-endian; this machine is not", file=sys.stderr)
        return 1

    # Before torch loads: OpenBLAS and OpenMP read these at load time, and
    # deterministic cuBLAS needs its workspace setting before CUDA starts.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    rin = os.fdopen(os.dup(0), "rb", buffering=0)
    wout = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import torch

    from . import worker

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed: it can be set once per process
    if args.device == "cuda" and not torch.cuda.is_available():
        print("replay_worker: --device cuda: no CUDA device (or this torch has no CUDA)", file=sys.stderr)
        return 1
    return worker.serve(rin, wout, lambda: worker.Worker(args.file, threads=args.threads, device=args.device))


if __name__ == "__main__":
    sys.exit(main())
