"""Regression (float targets, MSE): no classes, NaN accuracy."""

import torch

loss = torch.nn.MSELoss()


def datasets():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return (x[:32], y[:32]), (x[32:], y[32:])


def model():
    return torch.nn.Linear(4, 1)
