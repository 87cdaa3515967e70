"""``rdbench bench lstm``: the LSTM system's two costs, each against its baseline, in one run.

1. Training throughput (sequences/s, forward + backward + Adam step on the
   next-step MSE) of the fused ``nn.LSTM`` that rdbench trains with, against the same
   network written as a Python loop over ``nn.LSTMCell`` (what a hand-rolled cell,
   like the authors', costs).
2. The probe's cost: reading sequences step by step with the gates recomputed and
   the reaction/diffusion norms recorded into a balance meter at every step,
   against a plain ``nn.LSTM`` forward over the same sequences (no gradients).

The variants run interleaved, round by round, on the same data; the best round of
each is kept (the least disturbed by other load on a shared machine).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rdbench.balance import BalanceMeter
from rdbench.bench.timing import interleaved
from rdbench.memory import check_fits
from rdbench.systems.base import available_memory, resolve_device
from rdbench.systems.lstm.model import NextStepLSTM, build_model, next_step_loss
from rdbench.systems.lstm.probe import measure_teacher_forced


class CellLoopLSTM(nn.Module):
    """The same next-step predictor as :class:`NextStepLSTM`, stepped in Python with ``nn.LSTMCell``."""

    def __init__(self, fused: NextStepLSTM):
        super().__init__()
        self.cell = nn.LSTMCell(1, fused.hidden_size)
        self.readout = nn.Linear(fused.hidden_size, 1)
        with torch.no_grad():  # identical weights, so both do the same arithmetic
            self.cell.weight_ih.copy_(fused.lstm.weight_ih_l0)
            self.cell.weight_hh.copy_(fused.lstm.weight_hh_l0)
            self.cell.bias_ih.copy_(fused.lstm.bias_ih_l0)
            self.cell.bias_hh.copy_(fused.lstm.bias_hh_l0)
            self.readout.load_state_dict(fused.readout.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        c = torch.zeros_like(h)
        hs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t : t + 1], (h, c))
            hs.append(h)
        return self.readout(torch.stack(hs, dim=1)).squeeze(-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_round(model: nn.Module, data: torch.Tensor, steps: int) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        next_step_loss(model, data).backward()
        optimiser.step()


@torch.no_grad()
def forward_round(model: NextStepLSTM, data: torch.Tensor) -> None:
    model.lstm(data.unsqueeze(-1))


def probe_round(model: NextStepLSTM, data: torch.Tensor) -> None:
    meter = BalanceMeter(data.shape[0], device=data.device)
    measure_teacher_forced(model, data, meter)
    meter.result()  # stacks the norms: the whole cost of a measurement


def bench_lstm(batch: int, seq_len: int, hidden: int, train_steps: int, rounds: int, device: str,
               threads: int | None, echo: Callable[[str], None] = print) -> None:
    """LSTM: fused nn.LSTM training vs an nn.LSTMCell loop; the probe vs a plain nn.LSTM forward."""
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    # the data, and per variant the activations kept for backward: 4 gates, cell and hidden state, gradients
    check_fits(4 * batch * seq_len * (1 + 2 * 6 * 2 * hidden), available_memory(dev),
               f"bench lstm --batch {batch} --seq-len {seq_len} --hidden {hidden}",
               "use a smaller --batch, --seq-len or --hidden", str(dev))
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(batch, seq_len, generator=gen).to(dev)
    fused = build_model(hidden, "pytorch", seed=0).to(dev)
    loop = CellLoopLSTM(fused).to(dev)

    variants = {
        "train, fused nn.LSTM": lambda: training_round(fused, data, train_steps),
        "train, Python loop over nn.LSTMCell": lambda: training_round(loop, data, train_steps),
        "plain nn.LSTM forward (no metrics)": lambda: forward_round(fused, data),
        "probe + meter, every step": lambda: probe_round(fused, data),
    }
    timings = interleaved(variants, rounds, sync=lambda: _sync(dev), warmup=True)
    best = {name: timings.best(name) for name in variants}

    per_round = {name: batch * (train_steps if name.startswith("train") else 1) for name in variants}
    rate = {name: per_round[name] / best[name] for name in variants}
    echo(
        f"LSTM(1, {hidden}) + read-out, batch {batch} x {seq_len} values, {rounds} rounds, "
        f"device {dev}, torch threads {torch.get_num_threads()}"
    )
    for name in variants:
        echo(f"  {name:38s} {rate[name]:12.1f} sequences/s")
    train_ratio = rate["train, fused nn.LSTM"] / rate["train, Python loop over nn.LSTMCell"]
    probe_cost = best["probe + meter, every step"] / best["plain nn.LSTM forward (no metrics)"]
    echo(f"ratio training throughput fused / LSTMCell loop: {train_ratio:.2f}x")
    echo(f"probe cost / plain nn.LSTM forward: {probe_cost:.2f}x the time")
