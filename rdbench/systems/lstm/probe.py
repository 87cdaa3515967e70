"""The probe: an LSTM's cell-state update recomputed step by step and split in two.

With the gates of Eqs. (2)-(4), (6) (``i_t``, ``f_t``, ``C~_t``, ``o_t``) the cell
state evolves as (Eq. 5, rewritten as Eq. 11)

    C_t - C_{t-1} = i_t * C~_t - (1 - f_t) * C_{t-1}

whose first term is the *reaction* (Eq. 13: what the input gate writes) and whose
second is the *diffusion* (Eq. 16: what the forget gate erases). The fused
``nn.LSTM`` never exposes the gates, so :class:`LSTMProbe` recomputes them from its
weights with one fused matmul per step, ``[x_t, h_{t-1}] @ [W_ih, W_hh]^T + b``,
in PyTorch's gate order (i, f, g = C~, o). It reproduces ``nn.LSTM``'s h and c to
float rounding (the tests hold it to 1e-5).

Two measurements feed a :class:`~rdbench.balance.BalanceMeter` (one row per sample):

* :func:`measure_generation` (the paper's): the network warms up on a seed window,
  one step per value, from ``h = C = 0`` (so ``C_{t-1} = 0`` at the first step),
  then runs on its own predictions;
* :func:`measure_teacher_forced`: the network reads held-out sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rdbench.balance import BalanceMeter


@dataclass
class LSTMStep:
    """One cell step and its named parts (Eqs. 2-7, 11)."""

    h: torch.Tensor  # h_t, (batch, H)
    c: torch.Tensor  # C_t, (batch, H)
    reaction: torch.Tensor  # i_t * C~_t (Eq. 13)
    diffusion: torch.Tensor  # (1 - f_t) * C_{t-1} (Eq. 16)


class LSTMProbe:
    """Step-by-step replica of a single-layer, unidirectional ``nn.LSTM`` (input size 1 or more)."""

    def __init__(self, lstm: nn.LSTM):
        if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size:
            raise ValueError("the probe handles a single-layer, unidirectional LSTM without projection")
        self.hidden_size = lstm.hidden_size
        weight = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1)  # (4H, I + H)
        self.weight_t = weight.detach().t().contiguous()
        if lstm.bias:
            self.bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()
        else:
            self.bias = torch.zeros(4 * lstm.hidden_size, dtype=weight.dtype, device=weight.device)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, self.hidden_size)
        zeros = torch.zeros(shape, dtype=self.weight_t.dtype, device=self.weight_t.device)
        return zeros, zeros.clone()

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> LSTMStep:
        """Advance from (h_{t-1}, C_{t-1}) on input ``x`` (``(batch, I)``)."""
        gates = torch.addmm(self.bias, torch.cat([x, h], dim=1), self.weight_t)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # Eqs. (2), (3), (6)
        g = torch.tanh(g)  # C~_t, Eq. (4)
        reaction = i * g
        c_next = f * c + reaction  # Eq. (5), the same update as Eq. (11)
        h_next = o * torch.tanh(c_next)  # Eq. (7)
        return LSTMStep(h=h_next, c=c_next, reaction=reaction, diffusion=(1 - f) * c)

    def run(
        self,
        inputs: torch.Tensor,
        meter: BalanceMeter | None = None,
        first_step: int = 0,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Read ``inputs`` (``(batch, T, I)``); return every h ``(batch, T, H)`` and the last (h, C).

        When ``meter`` is given, step ``t`` is recorded as ``first_step + t``.
        """
        h, c = state if state is not None else self.zero_state(inputs.shape[0])
        hs = []
        for t in range(inputs.shape[1]):
            s = self.step(inputs[:, t], h, c)
            if meter is not None:
                meter.observe(first_step + t, (s.reaction, s.diffusion))
            h, c = s.h, s.c
            hs.append(h)
        return torch.stack(hs, dim=1), (h, c)


@dataclass
class Generation:
    """What :func:`measure_generation` produced: ``(batch, steps)`` values, in model units."""

    predictions: torch.Tensor
    warmup_steps: int


@torch.no_grad()
def measure_generation(
    model: nn.Module,
    seed_windows: torch.Tensor,
    steps: int,
    meter: BalanceMeter | None = None,
    record_warmup: bool = True,
) -> Generation:
    """Warm up on ``seed_windows`` (``(batch, S)``), then generate ``steps`` values autoregressively.

    The first generated value is the read-out after the last seed value; each of the
    ``steps`` autoregressive cell steps reads the previous generated value. Recorded
    steps: ``0..S-1`` (warm-up, if ``record_warmup``) and ``S..S+steps-1``.
    """
    probe = LSTMProbe(model.lstm)
    warmup = seed_windows.shape[1]
    _, (h, c) = probe.run(seed_windows.unsqueeze(-1), meter if record_warmup else None)
    value = model.readout(h)
    generated = []
    for k in range(steps):
        generated.append(value)
        s = probe.step(value, h, c)
        if meter is not None:
            meter.observe(warmup + k, (s.reaction, s.diffusion))
        h, c = s.h, s.c
        value = model.readout(h)
    return Generation(torch.cat(generated, dim=1), warmup)


@torch.no_grad()
def measure_teacher_forced(model: nn.Module, sequences: torch.Tensor, meter: BalanceMeter | None = None) -> torch.Tensor:
    """Read ``sequences`` (``(batch, T)``) value by value; return the next-value predictions."""
    probe = LSTMProbe(model.lstm)
    hidden, _ = probe.run(sequences.unsqueeze(-1), meter)
    return model.readout(hidden).squeeze(-1)
