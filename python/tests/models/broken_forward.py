"""A model whose forward fails: a defect, not a wrong request."""

import torch


class Broken(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 3)

    def forward(self, x):
        raise RuntimeError("broken_forward: deliberate failure in forward")


def datasets():
    x = torch.zeros(8, 12)
    return (x, torch.zeros(8, dtype=torch.int64)), (x, torch.zeros(8, dtype=torch.int64))


def model():
    return Broken()
