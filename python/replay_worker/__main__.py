"""python -m replay_worker FILE [--threads N] [--device cpu|cuda]

Serves the operator protocol (docs/protocol.md) for the model file FILE on
stdin and stdout. Logs go to stderr; nothing else may reach stdout, so the
protocol's descriptors are moved aside first and fd 1 points at stderr
for the model file's prints (and fd 0 at /dev/null).
"""

import argparse
import os
import select
import sys
import threading


def exit_when_orphaned(fd: int) -> None:
    """Ends the process as soon as no one can read fd, the protocol's output.

    When the daemon dies (SIGKILL, the OOM killer) the kernel closes its
    ends of the pipes. A worker waiting for a request then reads the end of
    its input and exits; one computing a request would go on computing to
    the end of the chain — minutes of a core and the model's memory for a
    long backward job — before its reply met the closed pipe. A thread
    waits in poll for the output pipe's error condition (no reader left),
    which poll reports whatever events are asked for, and exits at once.
    It only waits: it changes nothing a request computes.
    """
    if not hasattr(select, "poll"):
        return  # no poll here: the worker exits at its next reply instead

    def watch() -> None:
        p = select.poll()
        p.register(fd, 0)
        while True:
            for _, ev in p.poll():
                if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    try:
                        print("replay_worker: its daemon is gone (no reader of the protocol's output): exiting", file=sys.stderr, flush=True)
                    except OSError:
                        pass  # stderr went with the daemon
                    os._exit(1)

    threading.Thread(target=watch, name="exit_when_orphaned", daemon=True).start()


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
    exit_when_orphaned(wout.fileno())

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
