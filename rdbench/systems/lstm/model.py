"""The network of the LSTM rows and its training: ``nn.LSTM(1, H)`` + a linear read-out.

The model predicts the next value of a sequence from the values so far (next-step
prediction, MSE, Adam). Training uses the fused ``nn.LSTM`` (cuDNN on a GPU); the
step-by-step view that the balance meter needs lives in :mod:`.probe`, which reads
the same weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

InitScheme = Literal["pytorch", "normal"]


class NextStepLSTM(nn.Module):
    """A single-layer LSTM over scalar sequences and a linear read-out ``H -> 1``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, 1)

    @property
    def hidden_size(self) -> int:
        return self.lstm.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, T)`` values -> ``(batch, T)`` predictions of the value after each."""
        hidden, _ = self.lstm(x.unsqueeze(-1))
        return self.readout(hidden).squeeze(-1)


def build_model(hidden_size: int, init: InitScheme, seed: int) -> NextStepLSTM:
    """A freshly initialised model; the same seed gives the same weights.

    ``pytorch``: PyTorch's default, U(-1/sqrt(H), 1/sqrt(H)) for every LSTM tensor.
    ``normal``: as the authors' cell, input and recurrent weights (W and U of
    Eqs. 2-4, 6) from N(0, 1) and the LSTM biases zero; the read-out keeps
    PyTorch's default.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NextStepLSTM(hidden_size)
        if init == "normal":
            with torch.no_grad():
                for name, param in model.lstm.named_parameters():
                    if name.startswith("weight"):
                        param.normal_(0.0, 1.0)
                    else:
                        param.zero_()
        elif init != "pytorch":
            raise ValueError(f"unknown init {init!r}; allowed: pytorch, normal")
    return model


def shuffled_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy whose every parameter tensor has its entries randomly permuted.

    Each tensor keeps its values (so the weight scale and distribution are the
    trained ones) but loses the arrangement that training found: the control that
    separates "a trained structure" from "weights of this size".
    """
    shuffled = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in shuffled.parameters():
            flat = param.detach().reshape(-1)
            order = torch.randperm(flat.numel(), generator=gen).to(flat.device)
            param.copy_(flat[order].reshape(param.shape))
    return shuffled


def next_step_loss(model: nn.Module, sequences: torch.Tensor) -> torch.Tensor:
    """MSE between the predictions after steps 0..T-2 and the values at steps 1..T-1."""
    predictions = model(sequences[:, :-1])
    return nn.functional.mse_loss(predictions, sequences[:, 1:])


def last_value_loss(sequences: torch.Tensor) -> float:
    """The MSE of the naive forecast "the next value equals the current one"."""
    return float(nn.functional.mse_loss(sequences[:, :-1], sequences[:, 1:]))


@dataclass
class TrainingHistory:
    """Per-epoch mean training loss and test loss, and why training ended."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)


def train_model(
    model: NextStepLSTM,
    train: torch.Tensor,
    test: torch.Tensor,
    epochs: int,
    learning_rate: float,
    batch_size: int | None,
    seed: int,
    patience: int = 0,
    min_delta: float = 0.0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainingHistory:
    """Adam on the next-step MSE; ``batch_size=None`` is full-batch (one step an epoch).

    Early stop (``patience > 0``): end once the training loss has not fallen below
    its best by more than ``min_delta`` for ``patience`` epochs. The test loss is
    only recorded, never used to decide anything.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    n = train.shape[0]
    size = n if batch_size is None else min(batch_size, n)
    history = TrainingHistory()
    best, since_best = math.inf, 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(train.device) if size < n else None
        total = 0.0
        for start in range(0, n, size):
            batch = train if order is None else train[order[start : start + size]]
            optimiser.zero_grad(set_to_none=True)
            loss = next_step_loss(model, batch)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.shape[0]
        model.eval()
        with torch.no_grad():
            test_loss = float(next_step_loss(model, test))
        train_loss = total / n
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            raise FloatingPointError(f"loss became non-finite at epoch {epoch + 1} (lr={learning_rate})")
        history.train_loss.append(train_loss)
        history.test_loss.append(test_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, test_loss)
        if patience > 0:
            if train_loss < best - min_delta:
                best, since_best = train_loss, 0
            else:
                since_best += 1
                if since_best >= patience:
                    history.stopped_early = True
                    break
    model.eval()
    return history
