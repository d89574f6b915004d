"""A worker whose daemon dies in the middle of a request stops at once.

The daemon (replayd, or `replayd worker` on another machine) may be
SIGKILLed at any time: by an operator, the OOM killer, a test. The kernel
then closes its ends of the child's pipes. A child waiting for a request
reads the end of its input and exits; one computing a request would go on
computing for the rest of the chain — minutes for a long backward job of a
large model, holding its memory and a core for an answer no one will read
— and a few kills would exhaust a worker machine. The worker watches its
protocol output and exits as soon as no one can read it.
"""

import os
import time
import unittest

from tests.helpers import MODELS, Child, apply_request

from replay_worker import frame


class ParentGoneTest(unittest.TestCase):
    def test_exits_mid_request_when_the_daemon_is_gone(self):
        c = Child(os.path.join(MODELS, "busy_forward.py"))
        try:
            self.assertTrue(c.call({"op": "hello", "version": 1})["ok"])
            theta = c.call({"op": "init", "seed": 1})["theta"]
            frame.write_frame(c.proc.stdin, apply_request(theta, [[0, 1]], [1], "sgd", rid=c.id + 1))
            deadline = time.monotonic() + 60
            while "busy_forward: computing" not in c.stderr():
                self.assertIsNone(c.proc.poll(), c.stderr())
                self.assertLess(time.monotonic(), deadline, "the request did not start within a minute")
                time.sleep(0.01)  # polling interval of a condition with a deadline
            # What the kernel does to the daemon's ends when it dies.
            c.proc.stdin.close()
            c.proc.stdout.close()
            rc = c.wait(timeout=60)  # raises TimeoutExpired if the child goes on computing
            self.assertEqual(rc, 1, c.stderr())
            self.assertIn("its daemon is gone", c.stderr())
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
