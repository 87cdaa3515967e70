"""``rdbench bench ddpm``: U-Net training throughput, the probe's cost, and M_diff at the paper settings.

Printed, from one run:

1. training images per second of rdbench's U-Net against diffusers'
   ``UNet2DModel`` configured with the same widths, blocks per level, attention
   levels, GroupNorm groups and dropout (both parameter counts are printed), the
   same optimiser step, batch and precision (bf16 autocast and channels-last on
   CUDA), timed in interleaved rounds, best round of each kept;
2. the balance probe's cost during sampling: the same sampler with and without
   the meter (reaction, diffusion and eps norms at every step), as a fraction of
   the plain loop (target: at most 5 %);
3. ``M_diff`` at the paper settings (T = 1000, linear beta 1e-4..0.02,
   ``fixed_large``) for 1x32x32 and 3x32x32 images, measured through the sampler
   and the meter with the untrained paper-profile U-Net, beside the closed form
   ``sqrt(C H W) mean_t sigma_t`` and Table 1's column. No training is needed:
   ``M_diff`` depends only on the schedule and the image size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rdbench.balance import BalanceMeter, term_norms
from rdbench.bench.timing import interleaved
from rdbench.config import load_system
from rdbench.memory import check_fits
from rdbench.systems.base import available_memory, resolve_device
from rdbench.systems.ddpm.model import count_parameters
from rdbench.systems.ddpm.sample import TERMS, measure, network_predictor, sample
from rdbench.systems.ddpm.schedule import NoiseSchedule
from rdbench.systems.ddpm.system import build_model, build_schedule, memory_bytes

TABLE1_M_DIFF = {"mnist": 3.0274, "fashionmnist": 3.0277, "cifar10": 5.2508}


def diffusers_unet(settings, image_channels: int):
    """diffusers' UNet2DModel with the same widths, blocks, attention levels, groups and dropout."""
    from diffusers import UNet2DModel

    m = settings.model
    return UNet2DModel(
        sample_size=32,
        in_channels=image_channels,
        out_channels=image_channels,
        block_out_channels=tuple(m.channels),
        layers_per_block=m.blocks_per_level,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in m.attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m.attention)),
        norm_num_groups=m.groups,
        attention_head_dim=max(c for c, a in zip(m.channels, m.attention, strict=True) if a) // m.heads
        if any(m.attention) else None,
        dropout=m.dropout,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainStep:
    """One AdamW step on the simple loss, for any ``net(x, t) -> eps``."""

    def __init__(self, net, call, device: torch.device, batch: int, channels: int, bf16: bool, channels_last: bool):
        cuda = device.type == "cuda"
        self.net = net.to(device).train()
        self.channels_last = channels_last and cuda
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.call = call
        self.autocast = bf16 and cuda
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4)
        gen = torch.Generator(device=device).manual_seed(0)
        self.x = torch.randn(batch, channels, 32, 32, generator=gen, device=device)
        self.noise = torch.randn(batch, channels, 32, 32, generator=gen, device=device)
        self.t = torch.randint(0, 1000, (batch,), generator=gen, device=device)
        if self.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)

    def __call__(self) -> None:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            pred = self.call(self.net, self.x, self.t)
        loss = F.mse_loss(pred.float(), self.noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()


def best_of(variants: dict, rounds: int, repeat: int, device: torch.device) -> dict[str, float]:
    """Seconds per call of each variant: interleaved rounds, the best round kept."""
    timings = interleaved(variants, rounds, repeat=repeat, sync=lambda: _sync(device))
    return {name: timings.best(name) for name in variants}


def bench_ddpm(profile: str, device: str, batch: int | None, channels: int, train_steps: int,
               sampling_steps: int, sampling_rounds: int, samples: int | None, rounds: int,
               m_diff_samples: int, echo: Callable[[str], None] = print) -> None:
    """DDPM: U-Net training images/s vs diffusers' UNet2DModel; probe cost; M_diff vs Table 1."""
    dev = resolve_device(device)
    conf = load_system("ddpm")
    s = conf.resolve("mnist" if channels == 1 else "cifar10", profile)
    batch = batch or s.batch_size
    samples = samples or s.sampler.batch_size
    check_fits(2 * memory_bytes(s, (channels, 32, 32), batch, samples), available_memory(dev),
               f"bench ddpm --batch {batch} --samples {samples} (two U-Nets)", "use a smaller --batch or --samples",
               str(dev))
    echo(f"DDPM bench: profile {profile}, device {dev}, torch threads {torch.get_num_threads()}, "
               f"{channels}x32x32 images, bf16 {s.bf16 and dev.type == 'cuda'}, "
               f"channels-last {s.channels_last and dev.type == 'cuda'}")

    # 1. training throughput
    ours = build_model(s, 0)  # resolved for mnist (1 channel) or cifar10 (3 channels)
    theirs = diffusers_unet(s, channels)
    steps = {
        "rdbench UNet": TrainStep(ours, lambda n, x, t: n(x, t), dev, batch, channels, s.bf16, s.channels_last),
        "diffusers UNet2DModel": TrainStep(theirs, lambda n, x, t: n(x, t).sample, dev, batch, channels,
                                           s.bf16, s.channels_last),
    }
    for fn in steps.values():  # warm-up (allocator, kernels)
        fn()
    seconds = best_of(steps, rounds, train_steps, dev)
    echo(f"\n1. training, batch {batch}, {train_steps} steps x {rounds} rounds (best round):")
    for name, sec in seconds.items():
        echo(f"  {name:24s} {count_parameters(steps[name].net) / 1e6:7.3f} M params   "
                   f"{batch / sec:9.1f} images/s")
    ratio = seconds["diffusers UNet2DModel"] / seconds["rdbench UNet"]
    echo(f"  ratio rdbench / diffusers: {ratio:.2f}x images/s")

    # 2. the probe's cost during sampling
    ours.eval()
    eps = network_predictor(steps["rdbench UNet"].net, s.bf16, s.channels_last)
    schedule = NoiseSchedule(sampling_steps, s.schedule.beta_start, s.schedule.beta_end,
                             s.sampler.variance, s.sampler.final_noise, dev)
    shape = (channels, 32, 32)

    def plain() -> None:
        sample(eps, schedule, samples, shape, torch.Generator(device=dev).manual_seed(0), dev)

    def probed() -> None:
        meter = BalanceMeter(samples, TERMS, device=dev)
        sample(eps, schedule, samples, shape, torch.Generator(device=dev).manual_seed(0), dev, meter)
        meter.result()  # the one transfer of all recorded norms

    # many short rounds, alternating the order
    sampling = interleaved({"plain sampling loop": plain, "sampling with the probe": probed}, sampling_rounds,
                           sync=lambda: _sync(dev), alternate=True, warmup=True)
    times = sampling.seconds
    best = {name: sampling.best(name) for name in times}
    median = {name: sampling.median(name) for name in times}
    echo(f"\n2. sampling, {samples} images x {sampling_steps} reverse steps x {sampling_rounds} rounds:")
    for name in times:
        echo(f"  {name:24s} {best[name] / sampling_steps * 1e3:9.3f} ms/step (best)  "
                   f"{median[name] / sampling_steps * 1e3:9.3f} ms/step (median)")
    echo("  end to end, the probe costs "
               f"{100 * (best['sampling with the probe'] / best['plain sampling loop'] - 1):+.2f} % (best), "
               f"{100 * (median['sampling with the probe'] / median['plain sampling loop'] - 1):+.2f} % (median) "
               "of the plain loop (target <= 5 %)")
    # The same, isolated from the network's timing noise: the step arithmetic with and without the probe.
    extra = _probe_arithmetic_s(schedule, samples, shape, dev)
    plain_step = median["plain sampling loop"] / sampling_steps
    echo(f"  isolated: the probe adds {extra * 1e6:.1f} us per step = {100 * extra / plain_step:.2f} % "
               f"of the plain loop's {plain_step * 1e3:.3f} ms/step (target <= 5 %)")

    # 3. M_diff at the paper settings
    if m_diff_samples <= 0:
        return
    echo(f"\n3. M_diff at the paper settings, {m_diff_samples} samples through the sampler and the meter "
               f"(untrained paper-profile U-Net; M_diff does not depend on the network):")
    for c, cases in ((1, ("mnist", "fashionmnist")), (3, ("cifar10",))):
        paper = conf.resolve(cases[0], "paper")
        net = build_model(paper, 0).to(dev)
        sched = build_schedule(paper, dev)
        result, _ = measure(network_predictor(net, paper.bf16, False), sched, m_diff_samples,
                            paper.sampler.batch_size, (c, 32, 32), 0, dev)
        closed = sched.closed_form_m_diff(c * 32 * 32)
        for case in cases:
            table = TABLE1_M_DIFF[case]
            echo(f"  {case:13s} {c}x32x32  measured {result.M_diff:.4f}  closed form {closed:.4f}  "
                       f"Table 1 {table:.4f}  measured/Table 1 - 1 = {100 * (result.M_diff / table - 1):+.2f} %  "
                       f"({result.n_steps} steps)")


def _probe_arithmetic_s(schedule: NoiseSchedule, n: int, shape, device: torch.device, repeat: int = 500) -> float:
    """Seconds per step that the probe adds to the update alone (split step + norms + record)."""
    gen = torch.Generator(device=device).manual_seed(0)
    x, eps, z = (torch.randn((n, *shape), generator=gen, device=device) for _ in range(3))
    t = schedule.timesteps // 2
    meter = BalanceMeter(n, TERMS, device=device)

    def probed_update() -> None:
        step = schedule.reverse_step(x, t, eps, z)
        meter.record(t, term_norms([step.reaction, step.diffusion, step.eps]))

    def plain_update() -> None:
        schedule.reverse_mean(x, t, eps) + schedule.sigma(t) * z

    best = best_of({"probed": probed_update, "plain": plain_update}, 5, repeat, device)
    return max(best["probed"] - best["plain"], 0.0)
