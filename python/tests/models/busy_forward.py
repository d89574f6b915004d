"""A model whose forward never ends: it computes (torch operations, as a
long job does) until the process is stopped. It says on stderr when it
starts, so that a test knows the worker is inside a request."""

import sys

import torch


class Busy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 3)

    def forward(self, x):
        print("busy_forward: computing", file=sys.stderr, flush=True)
        a = torch.ones(64, 64)
        while True:
            a = torch.tanh(a @ a)


def datasets():
    x = torch.zeros(8, 12)
    return (x, torch.zeros(8, dtype=torch.int64)), (x, torch.zeros(8, dtype=torch.int64))


def model():
    return Busy()
