import os
import struct
import tempfile
import unittest

import numpy as np

from replay_ref import safetensors
from replay_ref.errors import InputError


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_roundtrip(self):
        ts = {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.bias": np.array([1.5, -2], np.float32),
              "optim.step": np.array(3.0, np.float32)}
        safetensors.write(self.path("a"), ts)
        got = safetensors.read(self.path("a"))
        self.assertEqual(sorted(got), sorted(ts))
        for k, v in ts.items():
            self.assertEqual(got[k].dtype, np.float32)
            self.assertEqual(got[k].shape, v.shape)
            np.testing.assert_array_equal(got[k], v)

    def test_reads_replay_layout(self):
        # What export.WriteSafetensors writes: names sorted, header padded
        # with spaces to a multiple of 8, a scalar of shape [].
        hdr = b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]}}'
        hdr += b" " * (-(8 + len(hdr)) % 8)
        raw = struct.pack("<Q", len(hdr)) + hdr + struct.pack("<3f", 7, 1, 2)
        with open(self.path("b"), "wb") as f:
            f.write(raw)
        got = safetensors.read(self.path("b"))
        self.assertEqual(got["a"].shape, ())
        self.assertEqual(float(got["a"]), 7.0)
        np.testing.assert_array_equal(got["b"], [[1, 2]])

    def test_malformed(self):
        cases = {
            "short": b"\x01\x00",
            "huge header": struct.pack("<Q", 1 << 40) + b"{}",
            "not json": struct.pack("<Q", 2) + b"{x",
            "offsets": struct.pack("<Q", 52) + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}' + b"\0" * 4,
            "dtype": struct.pack("<Q", 52) + b'{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}' + b"\0" * 4,
        }
        for name, raw in cases.items():
            with self.subTest(name):
                with open(self.path(name), "wb") as f:
                    f.write(raw)
                with self.assertRaises(InputError) as cm:
                    safetensors.read(self.path(name))
                self.assertNotIn("\n", str(cm.exception))

    def test_missing_file(self):
        with self.assertRaises(InputError):
            safetensors.read(self.path("nope"))


if __name__ == "__main__":
    unittest.main()
