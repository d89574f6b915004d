"""Framing of the operator protocol (docs/protocol.md, "Framing").

A frame is a 4-byte big-endian unsigned length L (at most MAX_FRAME)
followed by L bytes holding one msgpack map with string keys. This module
uses the standard library and msgpack only: the tests and the benchmark
driver use it without importing torch.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Optional

import msgpack

MAX_FRAME = 1 << 30
"""The longest frame body either side accepts (1 GiB)."""

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a frame of one msgpack map."""


def _read_exact(f: BinaryIO, n: int, what: str) -> Optional[bytearray]:
    """Reads exactly n bytes; None if the stream ends before the first one.

    Raw (unbuffered) files return short reads on pipes, hence the loop.
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            if got == 0:
                return None
            raise ProtocolError(f"short read: {what} ended after {got} of {n} bytes")
        got += k
    return buf


def read_frame(f: BinaryIO) -> Optional[dict[str, Any]]:
    """Reads one frame from f and returns its map.

    Returns None when f ends cleanly before a frame starts (the peer closed
    the stream). Raises ProtocolError for a frame longer than MAX_FRAME, a
    stream that ends inside a frame, or a body that is not one msgpack map
    with string keys.
    """
    header = _read_exact(f, _HEADER.size, "frame header")
    if header is None:
        return None
    (n,) = _HEADER.unpack(header)
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes exceeds the limit of {MAX_FRAME}")
    body = _read_exact(f, n, "frame body") if n else bytearray()
    if body is None:
        raise ProtocolError(f"short read: frame body ended after 0 of {n} bytes")
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)  # no copy: any buffer
    except Exception as e:  # msgpack raises several unrelated types
        raise ProtocolError(f"frame body is not msgpack: {type(e).__name__}: {e}") from e
    if not isinstance(msg, dict):
        raise ProtocolError(f"frame body is a msgpack {type(msg).__name__}, not a map")
    return msg


def _encode(msg: dict[str, Any]) -> tuple[bytes, bytes]:
    body = msgpack.packb(msg, use_bin_type=True, use_single_float=False)
    if len(body) > MAX_FRAME:
        raise ValueError(f"frame of {len(body)} bytes exceeds the limit of {MAX_FRAME}")
    return _HEADER.pack(len(body)), body


def encode_frame(msg: dict[str, Any]) -> bytes:
    """Returns the frame of msg: bytes as msgpack bin, floats as float64."""
    header, body = _encode(msg)
    return header + body


def write_frame(f: BinaryIO, msg: dict[str, Any]) -> None:
    """Writes the frame of msg to f and flushes it.

    Raw files may write fewer bytes than asked (a signal during a large
    write to a pipe), hence the loop.
    """
    for part in _encode(msg):  # two writes: no copy of a large body
        data = memoryview(part)
        while data:
            k = f.write(data)
            if k is None:  # non-blocking file with a full pipe: not ours to handle
                raise BlockingIOError("protocol output would block")
            data = data[k:]
    f.flush()
