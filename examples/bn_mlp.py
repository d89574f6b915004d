"""A tiny MLP with BatchNorm on Fashion-MNIST: its running statistics are
state (the test that replay's state is complete relies on them).

Data as in cnn_fmnist.py (REPLAY_FMNIST_DIR, REPLAY_FMNIST_SUBSET).
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
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(28 * 28, 32),
        torch.nn.BatchNorm1d(32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )


loss = torch.nn.CrossEntropyLoss()
