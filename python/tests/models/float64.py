"""A float64 model: its state cannot travel as float32 exactly."""

import torch


def datasets():
    x = torch.zeros(8, 12, dtype=torch.float64)
    return (x, torch.zeros(8, dtype=torch.int64)), (x, torch.zeros(8, dtype=torch.int64))


def model():
    return torch.nn.Linear(12, 3).double()
