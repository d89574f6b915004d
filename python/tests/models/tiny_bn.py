"""A tiny classifier with BatchNorm: running statistics are state."""

import torch


def datasets():
    g = torch.Generator().manual_seed(99)
    x = torch.randn(96, 12, generator=g) * 3 + 1  # far from N(0, 1): the running stats move
    y = torch.randint(0, 3, (96,), generator=g)
    return (x[:64], y[:64]), (x[64:], y[64:])


def model():
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
