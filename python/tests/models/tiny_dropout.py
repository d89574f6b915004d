"""A tiny classifier with dropout: training draws random numbers."""

import torch


def datasets():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(96, 12, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return (x[:64], y[:64]), (x[64:], y[64:])


def model():
    return torch.nn.Sequential(
        torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 3)
    )
