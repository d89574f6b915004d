"""ResNet-18 on Fashion-MNIST: the paper's Figure 2 architecture on 1×28×28.

    replayd --torch-model resnet18=examples/resnet18_fmnist.py

torchvision's resnet18(num_classes=10) with the usual small-image
adaptation: conv1 a 3×3 convolution, stride 1, padding 1, one input
channel, and no max-pool, so the four stages see 28, 14, 7 and 4 pixels.
BatchNorm's running statistics (and num_batches_tracked) are part of the
state replay stores, moves and compares.

Data as in cnn_fmnist.py (REPLAY_FMNIST_DIR, REPLAY_FMNIST_SUBSET).
"""

import gzip
import os
import struct

import torch
import torchvision


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
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = torch.nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    # The same initialisation torchvision gives its own convolutions.
    torch.nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    m.maxpool = torch.nn.Identity()
    return m


loss = torch.nn.CrossEntropyLoss()
