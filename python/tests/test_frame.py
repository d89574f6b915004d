"""Framing: docs/protocol.md, "Framing"."""

import io
import os
import struct
import unittest

import msgpack

from tests.helpers import frame


class Trickle(io.RawIOBase):
    """A raw stream that reads and writes at most `chunk` bytes per call,
    as pipes may."""

    def __init__(self, data: bytes = b"", chunk: int = 3):
        self.data = bytearray(data)
        self.pos = 0
        self.chunk = chunk
        self.written = bytearray()

    def readable(self):
        return True

    def writable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.chunk, len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def write(self, b):
        n = min(len(b), self.chunk)
        self.written += bytes(b[:n])
        return n


MSG = {
    "op": "apply",
    "id": 17,
    "state": struct.pack("<3f", 1.5, -0.0, float("inf")),
    "lr": 0.1,  # not exact in float32: must travel as float64
    "big": 2**64 - 1,
    "nested": {"name": "adam", "list": [1, 2.5, "x"]},
    "empty": b"",
}


class FrameTest(unittest.TestCase):
    def test_round_trip_through_a_pipe(self):
        r, w = os.pipe()
        with os.fdopen(r, "rb", buffering=0) as rf, os.fdopen(w, "wb", buffering=0) as wf:
            frame.write_frame(wf, MSG)
            frame.write_frame(wf, {"id": 18, "ok": True})
            wf.close()
            self.assertEqual(frame.read_frame(rf), MSG)
            self.assertEqual(frame.read_frame(rf), {"id": 18, "ok": True})
            self.assertIsNone(frame.read_frame(rf), "a stream closed between frames is a clean end")

    def test_wire_format(self):
        # 4-byte big-endian length, then msgpack with bin for bytes and
        # float64 for reals: what the Go side decodes.
        data = frame.encode_frame({"v": b"\x01\x02", "x": 0.1})
        (n,) = struct.unpack(">I", data[:4])
        self.assertEqual(n, len(data) - 4)
        body = data[4:]
        self.assertIn(b"\xc4\x02\x01\x02", body)  # bin 8 of two bytes
        self.assertIn(b"\xcb" + struct.pack(">d", 0.1), body)  # float64

    def test_short_reads_and_writes(self):
        t = Trickle(chunk=3)
        frame.write_frame(t, MSG)
        self.assertEqual(bytes(t.written), frame.encode_frame(MSG))
        self.assertEqual(frame.read_frame(Trickle(bytes(t.written), chunk=1)), MSG)

    def test_truncated(self):
        data = frame.encode_frame(MSG)
        for cut in (2, 4, 5, len(data) - 1):
            with self.subTest(cut=cut), self.assertRaises(frame.ProtocolError):
                frame.read_frame(io.BytesIO(data[:cut]))

    def test_too_long(self):
        header = struct.pack(">I", frame.MAX_FRAME + 1)
        with self.assertRaisesRegex(frame.ProtocolError, "exceeds"):
            frame.read_frame(io.BytesIO(header + b"\x80"))

    def test_not_one_map(self):
        bodies = {
            "array": msgpack.packb([1, 2]),
            "garbage": b"\xc1\xc1\xc1",
            "int key": msgpack.packb({1: 2}),
            "two maps": msgpack.packb({}) + msgpack.packb({}),
            "empty": b"",
        }
        for what, body in bodies.items():
            with self.subTest(what), self.assertRaises(frame.ProtocolError):
                frame.read_frame(io.BytesIO(struct.pack(">I", len(body)) + body))


if __name__ == "__main__":
    unittest.main()
