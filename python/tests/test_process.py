"""The worker as the daemon runs it: `python -m replay_worker FILE` over pipes."""

import math
import os
import struct
import unittest

from tests import helpers
from tests.helpers import EXAMPLES, MODELS, Child, apply_request, i32

from replay_worker import frame


def model(name: str) -> str:
    return os.path.join(MODELS, name + ".py")


class SessionTest(unittest.TestCase):
    def setUp(self):
        self.children = []

    def tearDown(self):
        for c in self.children:
            c.close()

    def child(self, *args, **kw) -> Child:
        c = Child(*args, **kw)
        self.children.append(c)
        return c

    def test_session_and_fresh_process_purity(self):
        # The same request in two processes (and twice in one) gives the
        # same bits; the model file's prints do not reach the protocol.
        results = []
        for _ in range(2):
            c = self.child(model("noisy"))
            h = c.call({"op": "hello", "version": 1})
            self.assertTrue(h["ok"], h)
            self.assertEqual(h["version"], 1)
            self.assertEqual(h["model"], "noisy")
            self.assertEqual(h["fingerprint"]["threads"], "1")
            n = sum(math.prod(t["shape"]) for t in h["tensors"])  # all are params here
            theta = c.call({"op": "init", "seed": 5})["theta"]
            self.assertEqual(len(theta), 4 * n)
            state = helpers.zero_state(theta, 3 * n + 1)  # adam: θ, exp_avg, exp_avg_sq, t
            req = apply_request(state, [[1, 2, 3, 4], [5, 6, 7, 8], [0, 9, 10, 11]], [3, 2, 1], "adam")
            req.pop("id")
            a = c.call(req)
            self.assertTrue(a["ok"], a)
            self.assertEqual(a, dict(c.call(req), id=a["id"]))
            ev = c.call({"op": "evaluate", "theta": a["state"][: len(theta)], "train": i32(range(64)), "test": i32(range(32))})
            self.assertTrue(ev["ok"], ev)
            self.assertEqual(c.call({"op": "shutdown"}), {"id": c.id, "ok": True})
            self.assertEqual(c.wait(), 0)
            self.assertIn("noisy forward", c.stderr())
            results.append((a["state"], a["losses"], ev["test_loss"]))
        self.assertEqual(results[0], results[1])

    def test_bad_version_and_wrong_request_answer_ok_false(self):
        c = self.child(model("tiny_mlp"), "--threads", "2")
        r = c.call({"op": "hello", "version": 2})
        self.assertFalse(r["ok"])
        self.assertIn("speaks 1", r["error"])
        r = c.call({"op": "init", "seed": "x"})
        self.assertEqual((r["ok"], r["error"]), (False, "seed must be an integer"))
        h = c.call({"op": "hello", "version": 1})
        self.assertTrue(h["ok"], "the child goes on after a wrong request")
        self.assertEqual(h["fingerprint"]["threads"], "2")
        self.assertTrue(c.call({"op": "shutdown"})["ok"])
        self.assertEqual(c.wait(), 0)

    def test_cuda_without_a_gpu_says_so(self):
        # This machine has no GPU (and Debian's torch no CUDA): the only
        # part of --device cuda testable here is the refusal.
        import torch

        if torch.cuda.is_available():
            self.fail("a GPU is present: replace this test by one that runs the worker on it")
        c = self.child(model("tiny_mlp"), "--device", "cuda")
        self.assertEqual(c.wait(), 1)
        self.assertIn("no CUDA device", c.stderr())

    def test_stdin_closed_exits_zero(self):
        c = self.child(model("tiny_mlp"))
        self.assertTrue(c.call({"op": "hello", "version": 1})["ok"])
        c.proc.stdin.close()
        self.assertEqual(c.wait(), 0)

    def test_garbage_exits_non_zero(self):
        cases = {
            "not msgpack": struct.pack(">I", 3) + b"\xc1\xc1\xc1",
            "not a map": struct.pack(">I", 4) + b"\x93\x01\x02\x03",
            "no id": frame.encode_frame({"op": "hello", "version": 1}),
            "truncated": struct.pack(">I", 100) + b"\x80",
            "too long": struct.pack(">I", frame.MAX_FRAME + 1),
        }
        children = {what: self.child(model("tiny_mlp")) for what in cases}  # start together: torch loads slowly
        for what, data in cases.items():
            with self.subTest(what):
                c = children[what]
                c.proc.stdin.write(data)
                c.proc.stdin.close()
                self.assertEqual(c.wait(), 2)
                self.assertIn("protocol error", c.stderr())
                self.assertEqual(c.proc.stdout.read(), b"", "no reply to garbage")

    def test_defect_exits_with_traceback(self):
        c = self.child(model("broken_forward"))
        h = c.call({"op": "hello", "version": 1})
        self.assertTrue(h["ok"], h)
        theta = c.call({"op": "init", "seed": 1})["theta"]
        req = apply_request(theta, [[0, 1]], [1], "sgd")
        req.pop("id")
        try:
            reply = c.call(req)
        except (BrokenPipeError, frame.ProtocolError) as e:
            reply = e
        self.assertIsNone(reply, "no reply: the child died")
        self.assertEqual(c.wait(), 1)
        self.assertIn("Traceback", c.stderr())
        self.assertIn("deliberate failure in forward", c.stderr())

    def test_model_that_cannot_load_says_why_in_hello(self):
        c = self.child(model("float64"))
        r = c.call({"op": "hello", "version": 1})
        self.assertFalse(r["ok"])
        self.assertIn("float32", r["error"])
        self.assertNotIn("\n", r["error"])
        self.assertFalse(c.call({"op": "init", "seed": 1})["ok"])
        self.assertTrue(c.call({"op": "shutdown"})["ok"])
        self.assertEqual(c.wait(), 0)
        c = self.child(os.path.join(MODELS, "no_such_model.py"))
        r = c.call({"op": "hello", "version": 1})
        self.assertIn("no such file", r["error"])


class ExamplesTest(unittest.TestCase):
    """The shipped model files load and have the documented layout (on a
    small subset of Fashion-MNIST, to stay fast)."""

    def test_examples(self):
        want = {
            "cnn_fmnist.py": ("0.weight", [8, 1, 3, 3], False),
            "bn_mlp.py": ("1.weight", [32, 784], True),
            "resnet18_fmnist.py": ("conv1.weight", [64, 1, 3, 3], True),
        }
        children = {f: Child(os.path.join(EXAMPLES, f), env={"REPLAY_FMNIST_SUBSET": "64"}) for f in want}
        try:
            for f, (first, shape, has_bn) in want.items():
                with self.subTest(f):
                    c = children[f]
                    h = c.call({"op": "hello", "version": 1})
                    self.assertTrue(h["ok"], (h, c.stderr()))
                    self.assertEqual((h["train"], h["test"], h["classes"]), (64, 64, 10))
                    names = [t["name"] for t in h["tensors"]]
                    shapes = {t["name"]: t["shape"] for t in h["tensors"]}
                    self.assertIn(first, names)
                    self.assertEqual(shapes[first], shape)
                    self.assertEqual(any(n.endswith("running_var") for n in names), has_bn)
                    if f == "resnet18_fmnist.py":
                        self.assertFalse(any(n.startswith("maxpool") for n in names))
                        self.assertEqual(shapes["fc.weight"], [10, 512])
                        self.assertEqual(sum(1 for n in names if n.endswith("num_batches_tracked")), 20)
                    # One momentum step at batch 4: the state grows by the
                    # buffers and t, every num_batches_tracked counts it.
                    theta = c.call({"op": "init", "seed": 3})["theta"]
                    n_param = sum(math.prod(t["shape"]) for t in h["tensors"] if t["param"])
                    r = c.call(dict(apply_request(helpers.zero_state(theta, len(theta) // 4 + n_param + 1),
                                                  [[0, 1, 2, 3]], [1], "momentum"), id=None))
                    self.assertTrue(r["ok"], (r, c.stderr()))
                    self.assertEqual(len(r["state"]), len(theta) + 4 * (n_param + 1))
                    self.assertTrue(math.isfinite(r["losses"][0]) and r["losses"][0] > 0)
                    v, off = helpers.vec(r["state"]), 0
                    for t in h["tensors"]:
                        n = math.prod(t["shape"])
                        if t["name"].endswith("num_batches_tracked"):
                            self.assertEqual(float(v[off]), 1.0, t["name"])
                        off += n
                    self.assertEqual(float(v[-1]), 1.0, "optim.step")
                    self.assertTrue(c.call({"op": "shutdown"})["ok"])
                    self.assertEqual(c.wait(), 0)
        finally:
            for c in children.values():
                c.close()


if __name__ == "__main__":
    unittest.main()
