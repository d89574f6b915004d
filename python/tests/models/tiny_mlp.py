"""A tiny classifier on synthetic data (fast: the unit tests' model)."""

import torch


def datasets():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(96, 12, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return (x[:64], y[:64]), (x[64:], y[64:])


def model():
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
