"""The predictor network: a small ensemble of MLPs on the 145 Magpie features.

All members are evaluated in one batched pass (weights stacked along a leading
"member" axis), so an ensemble costs about as much as one wide MLP. The mean over members
is the prediction and their standard deviation is the uncertainty: members agree where
training data is dense and disagree on compositions unlike anything they saw.

Inputs are standardized with statistics fixed at training time and stored with the
weights; outputs are de-standardized the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleMLP(nn.Module):
    """``n_members`` independent MLPs ``in_dim -> hidden x depth -> 1`` evaluated together.

    Args:
        in_dim: number of input features.
        hidden: width of every hidden layer.
        depth: number of hidden layers.
        n_members: ensemble size.
        dropout: dropout probability after every hidden layer (training only).

    Example:
        >>> net = EnsembleMLP(145, hidden=32, depth=2, n_members=3)
        >>> net(torch.zeros(4, 145)).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 2, n_members: int = 5,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.hidden, self.depth, self.n_members = in_dim, hidden, depth, n_members
        self.dropout = dropout
        dims = [in_dim] + [hidden] * depth + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(n_members, d_in, d_out)
            for m in range(n_members):
                nn.init.kaiming_uniform_(w[m].T, a=math.sqrt(5))  # nn.Linear's default init
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(n_members, 1, d_out).uniform_(-bound, bound)))
        self.register_buffer("x_mean", torch.zeros(in_dim))
        self.register_buffer("x_std", torch.ones(in_dim))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def set_normalization(self, x_mean: torch.Tensor, x_std: torch.Tensor, y_mean: float, y_std: float) -> None:
        """Fix the input and output standardization (from the training split)."""
        self.x_mean.copy_(x_mean)
        self.x_std.copy_(torch.where(x_std > 1e-8, x_std, torch.ones_like(x_std)))
        self.y_mean.fill_(float(y_mean))
        self.y_std.fill_(float(y_std))

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Standardized predictions of every member, shape ``(n_members, batch)``."""
        h = ((x - self.x_mean) / self.x_std).unsqueeze(0).expand(self.n_members, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = nn.functional.silu(h)
                if self.dropout and self.training:
                    h = nn.functional.dropout(h, self.dropout, training=True)
        return h.squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of every member in target units, shape ``(n_members, batch)``."""
        return self.forward_normalized(x) * self.y_std + self.y_mean

    def config(self) -> dict[str, float]:
        return {"in_dim": self.in_dim, "hidden": self.hidden, "depth": self.depth,
                "n_members": self.n_members, "dropout": self.dropout}
