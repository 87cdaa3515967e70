"""``rdbench bench ddpm``'s parts on a CPU: the variants, the benchmarked step, the profiler table, the
captured sampling loop (the GPU figures come from scripts/gpu_check.sh)."""

from __future__ import annotations

import torch

from rdbench.balance import BalanceMeter
from rdbench.bench.ddpm import (
    Variant,
    build_step,
    captured_sampling_loop,
    top_kernels,
    training_variants,
)
from rdbench.config import load_system
from rdbench.systems.ddpm.sample import TERMS, StaticReverseStep, network_predictor
from rdbench.systems.ddpm.system import build_model, build_schedule

CPU = torch.device("cpu")


def smoke():
    return load_system("ddpm").resolve("mnist", "smoke")


def test_variants_put_both_captured_defaults_first_and_cover_layout_and_precision():
    s = smoke()
    cuda = training_variants(s, torch.device("cuda"))
    assert cuda[0] == Variant("rdbench", True, "autocast", True)
    assert cuda[1] == Variant("diffusers", True, "autocast", True)
    ours = {(v.channels_last, v.precision) for v in cuda if v.network == "rdbench" and v.captured}
    assert ours == {(True, "autocast"), (True, "bf16-master"), (False, "autocast"), (False, "bf16-master")}
    assert Variant("rdbench", True, "autocast", False) in cuda  # today's eager step, for the capture's gain
    cpu = training_variants(s, CPU)
    assert {v.precision for v in cpu} == {"fp32"} and not any(v.channels_last for v in cpu)
    assert len({v.label(CPU) for v in cpu}) == len(cpu)


def test_the_benchmarked_step_trains_both_networks_and_the_profiler_lists_ops(one_thread):
    s = smoke()
    schedule = build_schedule(s)
    for network in ("rdbench", "diffusers"):
        step = build_step(Variant(network, False, "fp32", True), s, CPU, 4, 1, schedule)
        before = [p.detach().clone() for p in step.trained]
        ema_before = [e.clone() for e in step.ema]
        step()
        assert any(not torch.equal(a, p) for a, p in zip(before, step.trained, strict=True)), network
        assert any(not torch.equal(a, e) for a, e in zip(ema_before, step.ema, strict=True)), network
    table = top_kernels(step, CPU, steps=1, rows=5)
    assert "aten::" in table and "Self CPU" in table


@torch.inference_mode()
def test_captured_sampling_loop_records_every_noisy_step(one_thread):
    s = smoke()
    schedule = build_schedule(s)
    eps = network_predictor(build_model(s, 0), False, False)
    x_T = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    step = StaticReverseStep(eps, schedule, x_T, torch.Generator().manual_seed(1), True)
    for _ in range(2):  # a second round starts again at T - 1 (the bench's rounds)
        meter = BalanceMeter(2, TERMS)
        captured_sampling_loop(step, schedule.timesteps, meter)
        result = meter.result()
        assert result.n_steps == schedule.timesteps - 1 and result.M_diff > 0
