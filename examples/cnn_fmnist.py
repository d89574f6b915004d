"""A small CNN on Fashion-MNIST: a replay model file (python/replay_worker).

    replayd --torch-model cnn=examples/cnn_fmnist.py

Data: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist,
IDX files, gzip); REPLAY_FMNIST_DIR names another directory with the same
four files, REPLAY_FMNIST_SUBSET=N keeps the first N examples of each split
(for fast tests). Images are float32 [N, 1, 28, 28] scaled by 1/255 (no
other normalisation: the exports' convention), labels int64.

Self-contained on purpose (no import of a neighbour): copy it and edit.
"""

import gzip
import os
import struct

import torch


def _idx(path):
    """An IDX file (gzip) as a tensor: big-endian magic, dims, raw data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:  # 0x08: unsigned byte, all Fashion-MNIST files
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = bytearray(data[4 + 4 * ndim :])
    return torch.frombuffer(body, dtype=torch.uint8).reshape(dims)


def _split(directory, prefix, subset):
    x = _idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"))
    y = _idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"))
    if subset:
        x, y = x[:subset], y[:subset]
    return (x.to(torch.float32) / 255.0).unsqueeze(1).contiguous(), y.to(torch.int64)


def datasets():
    directory = os.environ.get("REPLAY_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
    subset = int(os.environ.get("REPLAY_FMNIST_SUBSET", "0"))
    return _split(directory, "train", subset), _split(directory, "t10k", subset)


def model():
    # 1×28×28 → 8×14×14 → 16×7×7 → 10: ≈ 9k parameters, a step at batch 8
    # takes about a millisecond on one core.
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 7 * 7, 10),
    )


loss = torch.nn.CrossEntropyLoss()
