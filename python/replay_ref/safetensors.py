"""safetensors read and written by hand (Debian packages no safetensors).

The format: an 8-byte little-endian header length H, H bytes of JSON
mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the end of the header; an optional "__metadata__"
entry), then the raw little-endian data.
"""

from __future__ import annotations

import json
import struct
from typing import Dict

import numpy as np

from .errors import InputError

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}
_MAX_HEADER = 100 << 20  # the reference implementation's limit


def read(path: str) -> Dict[str, np.ndarray]:
    """Returns every tensor of the file by name, as numpy arrays of its dtype."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e
    if len(raw) < 8:
        raise InputError(f"{path}: not a safetensors file ({len(raw)} bytes)")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > _MAX_HEADER or 8 + hlen > len(raw):
        raise InputError(f"{path}: not a safetensors file (header length {hlen}, file {len(raw)} bytes)")
    try:
        header = json.loads(raw[8 : 8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: safetensors header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object")
    data = memoryview(raw)[8 + hlen :]
    out: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: tensor {name!r}: bad or unsupported header entry {info!r}") from e
        n = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(data) or end - begin != n * dtype.itemsize:
            raise InputError(f"{path}: tensor {name!r}: offsets {begin}..{end} do not hold shape {shape} of {info['dtype']}")
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return out


def write(path: str, tensors: Dict[str, np.ndarray]) -> None:
    """Writes float32/float64/int64 tensors (for the tests), names sorted."""
    rev = {v: k for k, v in _DTYPES.items()}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.array(tensors[name], order="C")  # ascontiguousarray would make a 0-d array 1-d
        a = a.astype(a.dtype.newbyteorder("<"))
        b = a.tobytes()
        header[name] = {"dtype": rev[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
