"""Prints to stdout at import and in every forward: the protocol on stdout
must not see it."""

import sys

import torch

print("noisy model file: imported")


class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 3)

    def forward(self, x):
        print("noisy forward", x.shape)
        sys.stdout.flush()
        return self.lin(x)


def datasets():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(96, 12, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return (x[:64], y[:64]), (x[64:], y[64:])


def model():
    return Noisy()
