"""Fashion-MNIST from its IDX files, as replay reads it.

Images are the training split in file order, scaled exactly as nn does:
float32(v) / 255 in float32 (one correctly rounded division, so PyTorch and
Go hold bitwise the same inputs). Files may be gzipped (Debian ships .gz) or
plain.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Tuple

import numpy as np

from .errors import InputError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (type 0x08), gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{path}: not an IDX file")
    if raw[2] != 0x08:
        raise InputError(f"{path}: IDX type 0x{raw[2]:02x}, want unsigned bytes (0x08)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    n = int(np.prod(dims, dtype=np.int64))
    body = raw[4 + 4 * ndim :]
    if len(body) != n:
        raise InputError(f"{path}: IDX dims {list(dims)} need {n} bytes, file has {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(d: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise InputError(f"{d}: no {stem}[.gz] (Fashion-MNIST IDX files; Debian package dataset-fashion-mnist)")


def scale(pixels: np.ndarray) -> np.ndarray:
    """uint8 [n, …] → float32 [n, 784…] = float32(v)/255, rows flattened."""
    x = pixels.reshape(pixels.shape[0], -1).astype(np.float32)
    return x / np.float32(255)


def fashion_mnist(d: str = DEFAULT_DIR) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)): float32 [n, 784], int64 [n]."""
    out = []
    for split in ("train", "t10k"):
        img = read_idx(_find(d, f"{split}-images-idx3-ubyte"))
        lab = read_idx(_find(d, f"{split}-labels-idx1-ubyte"))
        if img.shape[0] != lab.shape[0]:
            raise InputError(f"{d}: {split}: {img.shape[0]} images but {lab.shape[0]} labels")
        out.append((scale(img), lab.astype(np.int64)))
    return out[0], out[1]
