"""The check end to end on a synthetic Fashion-MNIST-shaped data set: files
written as replayctl export writes them, from a chain computed here; the
check must accept them, and reject them once they are wrong in any of the
ways an implementation of the optimizers could be wrong."""

import contextlib
import gzip
import io
import os
import struct
import tempfile
import textwrap
import unittest

import numpy as np
import torch

from replay_ref import chain, cli, models, optim, safetensors, tolerance

STEPS, BATCH, N = 12, 4, 40


def write_idx(path, a):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


class CheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.d = cls.tmp.name
        rng = np.random.default_rng(7)
        for split, n in (("train", N), ("t10k", 10)):
            write_idx(os.path.join(d, f"{split}-images-idx3-ubyte.gz"), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(os.path.join(d, f"{split}-labels-idx1-ubyte.gz"), rng.integers(0, 10, n, dtype=np.uint8))
        cls.batches = rng.integers(0, N, (STEPS, BATCH)).astype(np.int64)
        np.save(os.path.join(d, "batches.npy"), cls.batches)
        torch.manual_seed(3)
        m = models.mlp("mlp:6,5")
        cls.theta0 = {k: v.numpy().copy() for k, v in m.state_dict().items()}
        safetensors.write(os.path.join(d, "theta0.safetensors"), cls.theta0)
        (x, y), _ = cli._fmnist_pixels(d)
        cls.data = chain.Data(x, y)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def export(self, spec, kind, n, with_state, tweak=None, order=None):
        """An export of the chain computed by torch here (float32)."""
        if order is None:
            order = list(self.batches[:n]) if kind == "forward" else list(self.batches[n - 1 :: -1])
        s = chain.run(lambda: models.mlp("mlp:6,5"), self.theta0, self.data, torch.nn.CrossEntropyLoss(),
                      spec, order, [n], torch.float32)[n]
        if not with_state:
            s = {k: v for k, v in s.items() if not k.startswith("optim.")}
        s = {k: v.astype(np.float32) for k, v in s.items()}
        if tweak:
            tweak(s)
        p = os.path.join(self.d, f"{kind}{n}-{spec.name}.safetensors")
        safetensors.write(p, s)
        return p

    def run_check(self, spec, checks, extra=()):
        args = ["check", "--model", "mlp:6,5", "--data", self.d, "--theta0", os.path.join(self.d, "theta0.safetensors"),
                "--batches", os.path.join(self.d, "batches.npy"), "--optimizer", spec.name, "--lr", repr(spec.lr)]
        for f in ("momentum", "dampening", "beta1", "beta2", "eps", "weight_decay"):
            v = getattr(spec, f)
            if spec.name in ("momentum", "nesterov") and f in ("momentum", "dampening") or \
               spec.name in ("adam", "adamw") and f in ("beta1", "beta2", "eps") or f == "weight_decay":
                args += ["--" + f.replace("_", "-"), repr(v)]
        for kind, n, p in checks:
            args += ["--check", f"{kind}:{n}={p}"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(args + list(extra))
        return code, out.getvalue() + err.getvalue()

    SPECS = [optim.Spec.make("sgd", 0.05), optim.Spec.make("momentum", 0.02, momentum=0.9, dampening=0.1),
             optim.Spec.make("nesterov", 0.02, momentum=0.9, weight_decay=1e-3),
             optim.Spec.make("adam", 1e-3), optim.Spec.make("adamw", 1e-3, weight_decay=0.05)]

    def test_accepts_the_chain(self):
        for spec in self.SPECS:
            with self.subTest(spec.name):
                ws = spec.name != "sgd"
                checks = [(k, n, self.export(spec, k, n, ws)) for k in ("forward", "backward") for n in (1, 5, STEPS)]
                code, out = self.run_check(spec, checks, ["--with-state"] if ws else [])
                self.assertEqual(code, 0, out)
                self.assertIn("within tolerance", out)
                if ws:
                    self.assertIn("optim.step", out)
                    self.assertIn("optim.state.3.", out)

    def test_rejects(self):
        adam = self.SPECS[3]
        mom = self.SPECS[1]
        swapped = lambda n: list(self.batches[: n - 2]) + [self.batches[n - 1], self.batches[n - 2]]

        def scale(name, f):
            def t(s):
                s[name] = s[name] * np.float32(f)
            return t

        def setv(name, v):
            def t(s):
                s[name] = np.array(v, np.float32)
            return t

        cases = [
            ("forward iterate computed in backward order", mom, "forward", STEPS, dict(order=list(self.batches[STEPS - 1 :: -1]))),
            ("two batches swapped", adam, "forward", STEPS, dict(order=swapped(STEPS))),
            ("θ off by 1e-4 relative", adam, "backward", 5, dict(tweak=scale("2.weight", 1 + 1e-4))),
            ("exp_avg_sq off by 1e-3 relative", adam, "backward", 5, dict(tweak=scale("optim.state.1.exp_avg_sq", 1 + 1e-3))),
            ("momentum buffer sign", mom, "forward", 5, dict(tweak=scale("optim.state.0.momentum_buffer", -1))),
            ("step count", adam, "forward", 5, dict(tweak=setv("optim.step", 4))),
            ("NaN", mom, "forward", 5, dict(tweak=scale("0.bias", float("nan")))),
        ]
        for what, spec, kind, n, kw in cases:
            with self.subTest(what):
                p = self.export(spec, kind, n, True, **kw)
                code, out = self.run_check(spec, [(kind, n, p)], ["--with-state"])
                self.assertEqual(code, 1, out)
                self.assertIn("outside tolerance", out)

    def buggy_chain(self, spec, order, steps, bug):
        """A chain of hand-written optimizer steps with one of the mistakes an
        implementation of torch.optim's rules can make; returns the export."""
        m = models.mlp("mlp:6,5")
        chain.load_theta(m, self.theta0, "theta0")
        params = list(m.parameters())
        opt = spec.build(params)
        bufs = [torch.zeros_like(p) for p in params]
        for t, (k, idx) in enumerate(zip(steps, order)):
            x, y = self.data.batch(np.asarray(idx), torch.float32)
            opt.zero_grad()
            torch.nn.CrossEntropyLoss()(m(x), y).backward()
            if bug == "bias correction from k":
                # Adam's t taken from the batch's step number k, not from the
                # state: right forward (k = t), wrong backward.
                for p in params:
                    if p in opt.state:
                        opt.state[p]["step"] = torch.tensor(float(k - 1))
                opt.step()
                continue
            with torch.no_grad():  # momentum with dampening
                for p, b in zip(params, bufs):
                    g = p.grad
                    if t == 0 and bug != "dampening on the first step":
                        b.copy_(g)  # torch: the first buffer is the gradient, undamped
                    else:
                        b.mul_(spec.momentum).add_(g, alpha=1 - spec.dampening)
                    p.add_(b, alpha=-spec.lr)
        s = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
        p = os.path.join(self.d, f"buggy-{bug.replace(' ', '-')}.safetensors")
        safetensors.write(p, s)
        return p

    def test_rejects_optimizer_rule_mistakes(self):
        # Mistakes that only show in some chains: the check must compare
        # the chain that shows them.
        n = 6
        adam, mom = self.SPECS[3], self.SPECS[1]
        back = list(self.batches[n - 1 :: -1])
        fwd = list(self.batches[:n])
        steps_back, steps_fwd = list(range(n, 0, -1)), list(range(1, n + 1))
        p = self.buggy_chain(adam, fwd, steps_fwd, "bias correction from k")
        code, out = self.run_check(adam, [("forward", n, p)])
        self.assertEqual(code, 0, "forward, k = t: the mistake cannot show\n" + out)
        p = self.buggy_chain(adam, back, steps_back, "bias correction from k")
        code, out = self.run_check(adam, [("backward", n, p)])
        self.assertEqual(code, 1, out)
        # The hand-written momentum itself is right (to float32 rounding)…
        p = self.buggy_chain(mom, fwd, steps_fwd, "none")
        code, out = self.run_check(mom, [("forward", n, p)])
        self.assertEqual(code, 0, out)
        # …and dampening the first buffer is caught.
        p = self.buggy_chain(mom, fwd, steps_fwd, "dampening on the first step")
        code, out = self.run_check(mom, [("forward", n, p)])
        self.assertEqual(code, 1, out)

    def test_anchors(self):
        # Anchors at 4 and 8: θ̃_10 = T_9∘T_10(x_8), x_8 = θ̃_8 = T_5∘…∘T_8(x_4)
        # (from backward) or the forward state at 8 (from forward); the whole
        # optimizer state travels with the start point.
        spec = self.SPECS[3]
        run = lambda order, start: chain.run(lambda: models.mlp("mlp:6,5"), self.theta0, self.data,
                                             torch.nn.CrossEntropyLoss(), spec, order, [len(order)],
                                             torch.float32, start=start)[len(order)]
        b = self.batches
        x4 = run(list(b[3::-1]), None)
        x8 = run([b[7], b[6], b[5], b[4]], x4)
        self.assertEqual(float(x8["optim.step"]), 8)
        back10 = run([b[9], b[8]], x8)
        fwd8 = run(list(b[:8]), None)
        fwd10 = run([b[9], b[8]], fwd8)
        files = {}
        for name, st in (("back", back10), ("fwd", fwd10), ("x8", x8)):
            files[name] = os.path.join(self.d, f"anchor-{name}.safetensors")
            safetensors.write(files[name], {k: v.astype(np.float32) for k, v in st.items()})
        for anchors, check, want in [
            (["4:backward", "8:backward"], ("backward", 10, files["back"]), 0),
            (["4:backward", "8:forward"], ("backward", 10, files["fwd"]), 0),
            (["4:backward", "8:backward"], ("backward", 8, files["x8"]), 0),  # step 8 is under anchor 4
            (["4:backward", "8:forward"], ("backward", 10, files["back"]), 1),
            ([], ("backward", 10, files["back"]), 1),
        ]:
            with self.subTest(anchors=anchors, check=check[:2]):
                extra = ["--with-state"] + [x for a in anchors for x in ("--anchor", a)]
                code, out = self.run_check(spec, [check], extra)
                self.assertEqual(code, want, out)
        code, out = self.run_check(spec, [("backward", 10, files["back"])], ["--anchor", "8:backward", "--anchor", "4:backward"])
        self.assertEqual(code, 2, out)

    def test_with_state_requires_the_state(self):
        spec = self.SPECS[3]
        p = self.export(spec, "forward", 3, False)
        code, out = self.run_check(spec, [("forward", 3, p)], ["--with-state"])
        self.assertEqual(code, 1, out)
        self.assertIn("MISSING", out)
        code, out = self.run_check(spec, [("forward", 3, p)])
        self.assertEqual(code, 0, out)

    def test_bad_input_one_line(self):
        spec = self.SPECS[0]
        p = self.export(spec, "forward", 2, False)
        for what, extra in [("step beyond the log", ["--check", f"forward:{STEPS + 1}={p}"]),
                            ("backward 0", ["--check", f"backward:0={p}"]),
                            ("bad check", ["--check", "sideways:1=x"]),
                            ("state of another optimizer", ["--check", "forward:2=" + self.export(self.SPECS[3], "forward", 2, True)])]:
            with self.subTest(what):
                code, out = self.run_check(spec, [], extra)
                self.assertEqual(code, 2, out)
                self.assertEqual(out.count("\n"), 1, out)
                self.assertTrue(out.startswith("replay_ref: "), out)

    def test_model_file_with_batchnorm(self):
        # The running statistics are state: a file without their update
        # (a chain in eval mode would leave them) must fail.
        mf = os.path.join(self.d, "bn_model.py")
        with open(mf, "w") as f:
            f.write(textwrap.dedent(f"""
                import torch
                from replay_ref import cli
                def model():
                    return torch.nn.Sequential(torch.nn.Linear(784, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 10))
                def datasets():
                    (x, y), _ = cli._fmnist_pixels({self.d!r})
                    x = torch.from_numpy(x.astype('float32') / 255)
                    y = torch.from_numpy(y)
                    return (x, y), (x[:5], y[:5])
                """))
        import importlib.util
        spec_ = importlib.util.spec_from_file_location("bn_model", mf)
        mod = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(mod)
        torch.manual_seed(1)
        theta0 = {k: v.numpy().copy() for k, v in mod.model().state_dict().items()}
        self.assertIn("1.running_mean", theta0)
        t0 = os.path.join(self.d, "bn_theta0.safetensors")
        safetensors.write(t0, {k: v.astype(np.float32) for k, v in theta0.items()})
        (x, y), _ = mod.datasets()
        spec = optim.Spec.make("adam", 1e-3)
        s = chain.run(mod.model, theta0, chain.Data(x, y), torch.nn.CrossEntropyLoss(), spec,
                      list(self.batches[:4]), [4], torch.float32)[4]
        self.assertEqual(float(s["1.num_batches_tracked"]), 4)
        good = os.path.join(self.d, "bn_good.safetensors")
        safetensors.write(good, {k: v.astype(np.float32) for k, v in s.items()})
        stale = dict(s, **{"1.running_mean": theta0["1.running_mean"]})
        bad = os.path.join(self.d, "bn_bad.safetensors")
        safetensors.write(bad, {k: v.astype(np.float32) for k, v in stale.items()})
        base = ["check", "--model-file", mf, "--theta0", t0, "--batches", os.path.join(self.d, "batches.npy"),
                "--optimizer", "adam", "--lr", "1e-3", "--with-state"]
        for p, want in ((good, 0), (bad, 1)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = cli.main(base + ["--check", f"forward:4={p}"])
            self.assertEqual(code, want, out.getvalue())


class LayoutTest(unittest.TestCase):
    def test_state_names_follow_the_protocol(self):
        # docs/protocol.md: momentum buffers then step; all exp_avg, all
        # exp_avg_sq, then step; sgd nothing.
        self.assertEqual(optim.state_names("sgd", 2), [])
        self.assertEqual(optim.state_names("nesterov", 2),
                         ["optim.state.0.momentum_buffer", "optim.state.1.momentum_buffer", "optim.step"])
        self.assertEqual(optim.state_names("adamw", 2),
                         ["optim.state.0.exp_avg", "optim.state.1.exp_avg", "optim.state.0.exp_avg_sq",
                          "optim.state.1.exp_avg_sq", "optim.step"])
        m = models.mlp("mlp:3")
        params = list(m.parameters())
        for name in optim.NAMES:
            spec = optim.Spec.make(name, 0.1, momentum=0.5 if name in ("momentum", "nesterov") else None)
            opt = spec.build(params)
            self.assertEqual(list(optim.named_state(spec, opt, params, 0)), optim.state_names(name, len(params)))

    def test_defaults_are_torch_optims(self):
        a = optim.Spec.make("adamw", 1e-3)
        self.assertEqual((a.beta1, a.beta2, a.eps, a.weight_decay), (0.9, 0.999, 1e-8, 0.01))
        self.assertEqual(optim.Spec.make("adam", 1e-3).weight_decay, 0.0)

    def test_tolerance_floor(self):
        # With no measured error the floor is F·N·u·scale.
        self.assertEqual(tolerance.tolerance(0.0, 10, 1.0), tolerance.F * 10 * tolerance.U)


if __name__ == "__main__":
    unittest.main()
