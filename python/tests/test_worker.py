"""The worker's requests in process, against plain PyTorch."""

import math
import os
import unittest

import torch

from tests import helpers
from tests.helpers import MODELS, OPTIMIZERS, apply_request, f32, i32, torch_optimizer, vec, zero_state

from replay_worker import layout, worker

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

_workers: dict = {}


def get_worker(name: str) -> worker.Worker:
    if name not in _workers:
        _workers[name] = worker.Worker(os.path.join(MODELS, name + ".py"))
    return _workers[name]


def call(w: worker.Worker, req: dict) -> dict:
    return w.handle(req)


def init_state(w: worker.Worker, opt: str, seed: int = 11) -> bytes:
    theta = w.handle({"op": "init", "id": 1, "seed": seed})["theta"]
    return zero_state(theta, w.layout.dim(opt))


def chain(n: int, batch: int = 8, offset: int = 0, train: int = 64) -> list[list[int]]:
    """n batches of distinct-ish indices (a fixed pattern, not random)."""
    return [[(offset + 13 * j + 5 * i) % train for i in range(batch)] for j in range(n)]


def plain(name: str, opt: str, batches, steps, lr=0.05, seed=3, init_seed=11, start=None):
    """The chain in plain PyTorch: model(), torch.optim, the steps.

    Returns (state_dict, optimizer state_dict, losses). start, if given, is
    (state_dict, optimizer state_dict) to continue from.
    """
    w = get_worker(name)
    torch.manual_seed(init_seed)
    m = w.mf.model()
    o = torch_optimizer(opt, m.parameters(), lr)
    if start is not None:
        m.load_state_dict(start[0])
        o.load_state_dict(start[1])
    x, y = w.data.x_train, w.data.y_train
    losses = []
    m.train()
    for b, k in zip(batches, steps):
        torch.manual_seed(worker.step_seed(seed, k))
        o.zero_grad(set_to_none=True)
        loss = w.mf.loss(m(x[torch.tensor(b)]), y[torch.tensor(b)])
        loss.backward()
        o.step()
        losses.append(loss.item())
    return m.state_dict(), o.state_dict(), losses


def flat_plain(sd, osd, opt: str, t: int) -> torch.Tensor:
    """The layout rule written out independently of layout.py."""
    parts = [t.reshape(-1).float() for t in sd.values()]
    st = osd["state"]
    n = len(osd["param_groups"][0]["params"])
    if opt in ("momentum", "nesterov"):
        parts += [st[i]["momentum_buffer"].reshape(-1) for i in range(n)]
        parts.append(torch.tensor([float(t)]))  # torch.optim.SGD keeps no count
    elif opt in ("adam", "adamw"):
        parts += [st[i]["exp_avg"].reshape(-1) for i in range(n)]
        parts += [st[i]["exp_avg_sq"].reshape(-1) for i in range(n)]
        parts.append(st[0]["step"].reshape(1).float())
    return torch.cat(parts)


class LayoutTest(unittest.TestCase):
    def test_batchnorm_state_is_in_the_layout(self):
        w = get_worker("tiny_bn")
        h = w.handle({"op": "hello", "id": 1, "version": 1})
        t = {e["name"]: e for e in h["tensors"]}
        self.assertEqual(
            [e["name"] for e in h["tensors"]],
            list(w.mf.model().state_dict().keys()),
            "tensors in state_dict order",
        )
        for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
            self.assertIn(name, t)
            self.assertFalse(t[name]["param"], name)
        for name in ("0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"):
            self.assertTrue(t[name]["param"], name)
        self.assertEqual(t["1.num_batches_tracked"]["dtype"], "int64")
        self.assertEqual(t["1.num_batches_tracked"]["shape"], [])
        self.assertEqual(t["0.weight"]["shape"], [16, 12])
        self.assertEqual((h["train"], h["test"], h["classes"]), (64, 32, 3))
        self.assertEqual(h["fingerprint"]["threads"], "1")

        # In θ: num_batches_tracked travels exactly and counts the steps.
        s0 = init_state(w, "sgd")
        self.assertEqual(len(s0), 4 * sum(math.prod(e["shape"]) for e in h["tensors"]))
        r = w.handle(apply_request(s0, chain(3), [1, 2, 3], "sgd"))
        sd = self.unflatten(w, vec(r["state"]))
        self.assertEqual(sd["1.num_batches_tracked"], 3.0)
        self.assertTrue(torch.equal(self.unflatten(w, vec(s0))["1.running_var"], torch.ones(16)))
        self.assertFalse(torch.equal(sd["1.running_var"], torch.ones(16)), "training moves the running stats")

    @staticmethod
    def unflatten(w, v):
        out, off = {}, 0
        for e in w.layout.entries:
            out[e.name] = v[off : off + e.numel].view(e.shape)
            off += e.numel
        return out

    def test_init_is_the_seeded_module(self):
        w = get_worker("tiny_bn")
        for seed in (0, 11, 2**64 - 1):
            torch.manual_seed(seed)
            want = torch.cat([t.reshape(-1).float() for t in w.mf.model().state_dict().values()])
            got = vec(w.handle({"op": "init", "id": 1, "seed": seed})["theta"])
            self.assertTrue(torch.equal(got, want), seed)
        a = w.handle({"op": "init", "id": 1, "seed": 1})["theta"]
        b = w.handle({"op": "init", "id": 1, "seed": 2})["theta"]
        self.assertNotEqual(a, b)

    def test_integer_buffers_beyond_2_24_are_refused(self):
        w = get_worker("tiny_bn")
        s = vec(init_state(w, "sgd")).clone()
        off = 0
        for e in w.layout.entries:
            if e.name == "1.num_batches_tracked":
                s[off] = float(layout.INT_LIMIT)
            off += e.numel
        with self.assertRaisesRegex(worker.RequestError, "2\\^24"):
            w.handle(apply_request(f32(s), chain(1), [1], "sgd"))
        s[off - 1] = 0.5  # not an integer
        with self.assertRaisesRegex(worker.RequestError, "integer"):
            w.handle(apply_request(f32(s), chain(1), [1], "sgd"))

    def test_optimizer_state_round_trip(self):
        # torch.optim's state after some steps → the flat layout → a fresh
        # optimizer: the same state_dict, tensor for tensor.
        w = get_worker("tiny_mlp")
        for opt in ("momentum", "nesterov", "adam", "adamw"):
            with self.subTest(opt):
                sd, osd, _ = plain("tiny_mlp", opt, chain(4), [1, 2, 3, 4])
                torch.manual_seed(0)
                m = w.mf.model()
                m.load_state_dict(sd)
                params = w.layout.params(m)
                o = torch_optimizer(opt, params, 0.05)
                o.load_state_dict(osd)
                flat = w.layout.flatten_optimizer(opt, o, params, 4)
                self.assertEqual(flat.numel(), w.layout.dim(opt) - w.layout.theta_dim)
                self.assertEqual(float(flat[-1]), 4.0)
                o2 = torch_optimizer(opt, params, 0.05)
                self.assertEqual(w.layout.load_optimizer(opt, o2, params, flat), 4)
                a, b = osd["state"], o2.state_dict()["state"]
                self.assertEqual(a.keys(), b.keys())
                for i in a:
                    self.assertEqual(a[i].keys(), b[i].keys())
                    for k in a[i]:
                        self.assertTrue(torch.equal(a[i][k], b[i][k]), (i, k))

    def test_step_zero_means_no_state(self):
        # With dampening, torch.optim's first step sets the buffer to the
        # gradient itself; a zero buffer would give (1 − dampening)·g.
        w = get_worker("tiny_mlp")
        s0 = init_state(w, "momentum")
        r = w.handle(apply_request(s0, chain(1), [1], "momentum"))
        sd, osd, _ = plain("tiny_mlp", "momentum", chain(1), [1])
        td = w.layout.theta_dim
        buf0 = vec(r["state"])[td : td + 16 * 12]
        self.assertTrue(torch.equal(buf0, osd["state"][0]["momentum_buffer"].reshape(-1)))


class ApplyTest(unittest.TestCase):
    def check_against_plain(self, name, opt, n=6):
        w = get_worker(name)
        batches, steps = chain(n), list(range(n, 0, -1))  # a backward chain: n, n−1, …, 1
        r = w.handle(apply_request(init_state(w, opt), batches, steps, opt))
        sd, osd, losses = plain(name, opt, batches, steps)
        want = flat_plain(sd, osd, opt, n)
        got = vec(r["state"])
        self.assertEqual(got.numel(), want.numel())
        self.assertTrue(torch.equal(got, want), f"{name} {opt}: max |Δ| {float((got - want).abs().max())}")
        self.assertEqual(r["losses"], losses)

    def test_chain_equals_torch_optim_bitwise(self):
        for name in ("tiny_mlp", "tiny_bn", "tiny_dropout"):
            for opt in OPTIMIZERS:
                with self.subTest(model=name, optimizer=opt):
                    self.check_against_plain(name, opt)

    def test_split_chain_equals_whole_chain(self):
        # The daemon cuts chains where it likes (checkpoints, anchors): the
        # state must carry everything, the step numbers the dropout draws.
        for name in ("tiny_bn", "tiny_dropout"):
            w = get_worker(name)
            for opt in OPTIMIZERS:
                with self.subTest(model=name, optimizer=opt):
                    s0 = init_state(w, opt)
                    b, k = chain(7), [9, 4, 5, 1, 2, 8, 3]
                    whole = w.handle(apply_request(s0, b, k, opt))
                    half = w.handle(apply_request(s0, b[:3], k[:3], opt))
                    rest = w.handle(apply_request(half["state"], b[3:], k[3:], opt))
                    self.assertEqual(whole["state"], rest["state"])
                    self.assertEqual(whole["losses"], half["losses"] + rest["losses"])

    def test_apply_is_pure(self):
        w = get_worker("tiny_dropout")
        req = apply_request(init_state(w, "adam"), chain(5), [5, 4, 3, 2, 1], "adam")
        a = w.handle(req)
        w.handle(apply_request(init_state(w, "momentum", seed=2), chain(3, offset=1), [1, 2, 3], "momentum"))
        w.handle({"op": "evaluate", "id": 2, "theta": init_state(w, "sgd", seed=3), "train": i32(range(8)), "test": i32(range(8))})
        b = w.handle(req)
        self.assertEqual(a, b)

    def test_step_seed_is_fixed(self):
        # Stored iterates of dropout models depend on these values: a change
        # of step_seed changes every such run (and the README's formula).
        import hashlib

        self.assertEqual(worker.step_seed(0, 1), 4515791710611915679)
        self.assertEqual(worker.step_seed(1, 1), 5379384909421504757)
        self.assertEqual(worker.step_seed(2**64 - 1, 2**31 - 1), 3720528641248914497)
        d = hashlib.sha256(b"replay step seed\0" + (7).to_bytes(8, "little") + (9).to_bytes(8, "little")).digest()
        self.assertEqual(worker.step_seed(7, 9), int.from_bytes(d[:8], "little") & (2**63 - 1))

    def test_dropout_draws_depend_on_step_and_seed(self):
        w = get_worker("tiny_dropout")
        s0 = init_state(w, "sgd")
        base = w.handle(apply_request(s0, chain(1), [5], "sgd"))["state"]
        self.assertEqual(base, w.handle(apply_request(s0, chain(1), [5], "sgd"))["state"])
        self.assertNotEqual(base, w.handle(apply_request(s0, chain(1), [6], "sgd"))["state"])
        self.assertNotEqual(base, w.handle(apply_request(s0, chain(1), [5], "sgd", seed=4))["state"])
        # Without dropout the step number changes nothing.
        m = get_worker("tiny_mlp")
        s0 = init_state(m, "sgd")
        self.assertEqual(
            m.handle(apply_request(s0, chain(1), [5], "sgd"))["state"],
            m.handle(apply_request(s0, chain(1), [6], "sgd"))["state"],
        )

    def test_batchnorm_running_stats_are_needed(self):
        # An iterate recomputed from θ without its running statistics (the
        # module's fresh ones) differs: the state must carry them, and a
        # test comparing iterates can tell.
        name, opt = "tiny_bn", "momentum"
        w = get_worker(name)
        s1 = w.handle(apply_request(init_state(w, opt), chain(4), [1, 2, 3, 4], opt))["state"]
        s2 = w.handle(apply_request(s1, chain(3, offset=7), [5, 6, 7], opt))["state"]
        v1 = vec(s1)
        sd = LayoutTest.unflatten(w, v1)
        td = w.layout.theta_dim
        t = w.layout
        fresh = w.mf.model().state_dict()
        stats = ("1.running_mean", "1.running_var", "1.num_batches_tracked")

        def continue_from(drop_stats: bool) -> torch.Tensor:
            m2 = w.mf.model()
            sd2 = {k: (fresh[k] if drop_stats and k in stats else v.to(fresh[k].dtype)) for k, v in sd.items()}
            m2.load_state_dict(sd2)
            p2 = t.params(m2)
            o2 = torch_optimizer(opt, p2, 0.05)
            t.load_optimizer(opt, o2, p2, v1[td:])
            x, y = w.data.x_train, w.data.y_train
            m2.train()
            for b, k in zip(chain(3, offset=7), [5, 6, 7]):
                torch.manual_seed(worker.step_seed(3, k))
                o2.zero_grad(set_to_none=True)
                w.mf.loss(m2(x[torch.tensor(b)]), y[torch.tensor(b)]).backward()
                o2.step()
            return torch.cat([t.flatten(m2), t.flatten_optimizer(opt, o2, p2, 7)])

        self.assertTrue(torch.equal(continue_from(False), vec(s2)), "with the running stats: bitwise equal")
        without = continue_from(True)
        self.assertFalse(torch.equal(without, vec(s2)), "without the running stats the iterate differs")
        ev = {"op": "evaluate", "id": 1, "train": i32(range(64)), "test": i32(range(32))}
        self.assertNotEqual(
            w.handle(dict(ev, theta=f32(vec(s2)[:td])))["test_loss"],
            w.handle(dict(ev, theta=f32(without[:td])))["test_loss"],
        )


class EvaluateTest(unittest.TestCase):
    def test_against_plain_eval(self):
        w = get_worker("tiny_bn")
        s = w.handle(apply_request(init_state(w, "sgd"), chain(5), [1, 2, 3, 4, 5], "sgd"))["state"]
        theta = s[: 4 * w.layout.theta_dim]
        train, test = list(range(0, 64, 3)), list(range(32))
        req = {"op": "evaluate", "id": 1, "theta": theta, "train": i32(train), "test": i32(test)}
        got = w.handle(req)
        self.assertEqual(got, w.handle(req), "evaluate changes nothing")
        m = w.mf.model()
        sd = LayoutTest.unflatten(w, vec(theta))
        m.load_state_dict({k: v.to(m.state_dict()[k].dtype) for k, v in sd.items()})
        m.eval()
        with torch.no_grad():
            out = m(w.data.x_test[test])
            want_test = float(torch.nn.functional.cross_entropy(out, w.data.y_test[test]))
            want_acc = float((out.argmax(1) == w.data.y_test[test]).float().mean())
            want_train = float(torch.nn.functional.cross_entropy(m(w.data.x_train[train]), w.data.y_train[train]))
        self.assertEqual(got["test_loss"], want_test)
        self.assertEqual(got["train_loss"], want_train)
        self.assertAlmostEqual(got["test_acc"], want_acc, places=12)
        self.assertNotEqual(got["test_loss"], w.handle(dict(req, theta=init_state(w, "sgd")))["test_loss"])

    def test_empty_subsets(self):
        # An empty index list (msgpack nil from an empty Go slice, or an
        # empty bin) has NaN measures; a missing key is refused.
        w = get_worker("tiny_mlp")
        theta = init_state(w, "sgd")
        r = w.handle({"op": "evaluate", "id": 1, "theta": theta, "train": None, "test": b""})
        self.assertTrue(math.isnan(r["train_loss"]) and math.isnan(r["test_loss"]) and math.isnan(r["test_acc"]))
        with self.assertRaises(worker.RequestError):
            w.handle({"op": "evaluate", "id": 1, "theta": theta, "test": b""})

    def test_regression_has_no_accuracy(self):
        w = get_worker("tiny_regression")
        self.assertEqual(w.handle({"op": "hello", "id": 1, "version": 1})["classes"], 0)
        r = w.handle({"op": "evaluate", "id": 1, "theta": init_state(w, "sgd"), "train": i32(range(32)), "test": i32(range(8))})
        self.assertTrue(math.isnan(r["test_acc"]))
        self.assertGreater(r["test_loss"], 0)


class BadRequestTest(unittest.TestCase):
    def test_wrong_requests_are_refused(self):
        w = get_worker("tiny_mlp")
        s0 = init_state(w, "momentum")
        good = apply_request(s0, chain(2), [2, 1], "momentum")
        cases = {
            "short state": dict(good, state=s0[:-4]),
            "index out of range": dict(good, batches=i32([64] + [0] * 15)),
            "negative index": dict(good, batches=i32([-1] + [0] * 15)),
            "batch mismatch": dict(good, batch=3),
            "step 0": dict(good, steps=i32([1, 0])),
            "unknown optimizer": dict(good, optimizer=dict(good["optimizer"], name="lbfgs")),
            "missing field": dict(good, optimizer={"name": "adam"}),
            "nesterov with dampening": dict(good, optimizer=dict(OPTIMIZERS["nesterov"], dampening=0.5)),
            "negative lr": dict(good, lr=-1.0),
            "nan lr": dict(good, lr=float("nan")),
            "state not bin": dict(good, state=[1, 2]),
            "unaligned state": dict(good, state=s0 + b"\x00"),
            "step count not an integer": dict(good, state=s0[:-4] + f32(torch.tensor([1.5]))),
        }
        for what, req in cases.items():
            with self.subTest(what), self.assertRaises(worker.RequestError) as cm:
                w.handle(req)
            self.assertNotIn("\n", str(cm.exception))
        for req in (
            {"op": "hello", "id": 1, "version": 2},
            {"op": "train", "id": 1},
            {"op": "init", "id": 1, "seed": -1},
            {"op": "evaluate", "id": 1, "theta": s0, "train": i32([0]), "test": i32([0])},
            {"op": "evaluate", "id": 1, "theta": s0[: 4 * w.layout.theta_dim], "train": i32([0]), "test": i32([32])},
        ):
            with self.subTest(req["op"]), self.assertRaises(worker.RequestError):
                w.handle(req)

    def test_float64_model_refused(self):
        with self.assertRaisesRegex(layout.LayoutError, "float32"):
            worker.Worker(os.path.join(MODELS, "float64.py"))


if __name__ == "__main__":
    unittest.main()
