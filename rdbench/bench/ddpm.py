"""``rdbench bench ddpm``: U-Net training throughput, the probe's cost, and M_diff at the paper settings.

Printed, from one run:

1. training images per second of rdbench's U-Net against diffusers'
   ``UNet2DModel`` configured with the same widths, blocks per level, attention
   levels, GroupNorm groups and dropout (both parameter counts are printed), the
   same step (``t`` and noise drawn on the device, loss, backward, clipping, fused
   AdamW, EMA), batch and precision, both captured as one CUDA graph per step on
   CUDA (:mod:`rdbench.systems.ddpm.capture`), timed in interleaved rounds, best
   round of each kept. On CUDA, variants of rdbench's step beside the default:
   channels-last against contiguous memory, bf16 autocast (fp32 weights) against
   bf16 weights with fp32 master copies, and today's eager step; then
   torch.profiler's top kernels of both captured steps (on a CPU: the top ops by
   CPU time, the static step called directly, fp32 and contiguous only). The
   training defaults (``bf16: true``, ``channels_last: true`` in
   conf/systems/ddpm.yaml) stay what R was measured with until this table, run on
   the GPU (``scripts/gpu_check.sh``), shows another variant faster;
2. the balance probe's cost during sampling: one reverse step as a static-buffer
   step (a CUDA graph on CUDA) with and without the probe's norms, ms per reverse
   step and the probe's cost as a fraction of the plain loop (targets on one H200:
   <= 1 ms per step for 16 images, probe <= 5 %), beside the eager probed loop;
3. ``M_diff`` at the paper settings (T = 1000, linear beta 1e-4..0.02,
   ``fixed_large``) for 1x32x32 and 3x32x32 images, measured through the sampler
   and the meter with the untrained paper-profile U-Net, beside the closed form
   ``sqrt(C H W) mean_t sigma_t`` and Table 1's column. No training is needed:
   ``M_diff`` depends only on the schedule and the image size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rdbench.balance import BalanceMeter, term_norms
from rdbench.bench.timing import interleaved
from rdbench.config import load_system
from rdbench.memory import check_fits
from rdbench.systems.base import available_memory, resolve_device
from rdbench.systems.ddpm.capture import Replay, bf16_autocast
from rdbench.systems.ddpm.model import count_parameters
from rdbench.systems.ddpm.sample import TERMS, StaticReverseStep, measure, network_predictor, sample
from rdbench.systems.ddpm.schedule import NoiseSchedule
from rdbench.systems.ddpm.system import build_model, build_schedule, memory_bytes
from rdbench.systems.ddpm.train import ema_blend

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


PRECISIONS = ("autocast", "bf16-master", "fp32")
PROFILED_STEPS = 3  # steps under torch.profiler for the top-kernel tables
TOP_KERNELS = 10  # rows of each table


@dataclasses.dataclass(frozen=True)
class Variant:
    """How one training step is run: the network, memory layout, precision, captured or eager."""

    network: str  # "rdbench" or "diffusers"
    channels_last: bool
    precision: str  # autocast: bf16 autocast, fp32 weights; bf16-master: bf16 weights, fp32 master copies
    captured: bool  # the static step as one CUDA graph (a direct call on a CPU)

    def label(self, device: torch.device) -> str:
        name = "rdbench UNet" if self.network == "rdbench" else "diffusers UNet2DModel"
        how = ("captured" if device.type == "cuda" else "static") if self.captured else "eager"
        return f"{name:21s} {how:8s} {'channels-last' if self.channels_last else 'contiguous':13s} {self.precision}"


def training_variants(settings, device: torch.device) -> list[Variant]:
    """The default (the profile's layout and precision, captured) for both networks, beside the layout and
    precision alternatives and today's eager step; on a CPU layout and precision do not apply (fp32)."""
    if device.type != "cuda":
        return [Variant("rdbench", False, "fp32", True), Variant("rdbench", False, "fp32", False),
                Variant("diffusers", False, "fp32", True), Variant("diffusers", False, "fp32", False)]
    default = "autocast" if settings.bf16 else "fp32"
    layout = settings.channels_last
    variants = [Variant("rdbench", layout, default, True), Variant("diffusers", layout, default, True)]
    for channels_last in (layout, not layout):
        for precision in ("autocast", "bf16-master"):
            v = Variant("rdbench", channels_last, precision, True)
            if v not in variants:
                variants.append(v)
    variants += [Variant("rdbench", layout, default, False), Variant("diffusers", layout, default, False)]
    return variants


class TrainStep:
    """One training step as the trainer takes it, for any ``net(x, t) -> eps``.

    ``t`` and the noise are drawn on the device from a generator, ``x_t`` made by the
    schedule, the simple loss, backward, clipping to norm 1, fused AdamW, the EMA blend;
    over static buffers (a fixed batch of images), so that ``captured`` replays it as
    one CUDA graph (:class:`~rdbench.systems.ddpm.capture.Replay`). ``bf16-master``
    keeps the network's weights in bf16 and the optimizer's fp32 master copies beside
    them (gradients cast up, weights cast down after the step).
    """

    def __init__(self, net, call, device: torch.device, batch: int, channels: int, variant: Variant,
                 schedule: NoiseSchedule):
        cuda = device.type == "cuda"
        self.net = net.to(device).train()
        self.channels_last = variant.channels_last and cuda
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.params = list(self.net.parameters())
        self.master = None
        if variant.precision == "bf16-master" and cuda:
            self.master = [p.detach().float().clone().requires_grad_(True) for p in self.params]
            self.net.to(torch.bfloat16)
        trained = self.master if self.master is not None else self.params
        self.trained = trained
        self.call = call
        self.autocast = variant.precision == "autocast" and cuda
        self.opt = torch.optim.AdamW(trained, lr=1e-4, fused=True if cuda else None, capturable=variant.captured and cuda)
        self.ema = [p.detach().float().clone() for p in trained]
        self.ema_weight = torch.tensor(1e-3, device=device)
        self.schedule = schedule
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.x0 = torch.rand(batch, channels, 32, 32, generator=self.gen, device=device)
        self.replay = Replay(self.step, device, generators=[self.gen], before_each=self.zero_grad) \
            if variant.captured else None

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.net.zero_grad(set_to_none=True)

    def step(self) -> None:
        n = self.x0.shape[0]
        t = torch.randint(0, self.schedule.timesteps, (n,), generator=self.gen, device=self.device)
        noise = torch.randn(self.x0.shape, generator=self.gen, device=self.device)
        x_t = self.schedule.add_noise(self.x0, t, noise)
        if self.master is not None:
            x_t = x_t.to(torch.bfloat16)
        if self.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with bf16_autocast(self.autocast):
            pred = self.call(self.net, x_t, t)
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        if self.master is not None:
            for master, p in zip(self.master, self.params, strict=True):
                master.grad = p.grad.float()
        torch.nn.utils.clip_grad_norm_(self.trained, 1.0)
        self.opt.step()
        if self.master is not None:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.master)
        ema_blend(self.ema, [p.detach() for p in self.trained], self.ema_weight)

    def __call__(self) -> None:
        if self.replay is not None:
            self.replay()
        else:
            self.zero_grad()
            self.step()


def best_of(variants: dict, rounds: int, repeat: int, device: torch.device) -> dict[str, float]:
    """Seconds per call of each variant: interleaved rounds, the best round kept."""
    timings = interleaved(variants, rounds, repeat=repeat, sync=lambda: _sync(device))
    return {name: timings.best(name) for name in variants}


def build_step(variant: Variant, settings, device: torch.device, batch: int, channels: int,
               schedule: NoiseSchedule) -> TrainStep:
    if variant.network == "rdbench":
        return TrainStep(build_model(settings, 0, channels), lambda n, x, t: n(x, t), device, batch, channels,
                         variant, schedule)
    torch.manual_seed(0)
    return TrainStep(diffusers_unet(settings, channels), lambda n, x, t: n(x, t).sample, device, batch, channels,
                     variant, schedule)


def top_kernels(fn: Callable[[], None], device: torch.device, steps: int = PROFILED_STEPS,
                rows: int = TOP_KERNELS) -> str:
    """torch.profiler's table of the ops (CUDA: kernels by GPU time; CPU: ops by CPU time) over ``steps`` calls."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        _sync(device)
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=60)


def captured_sampling_loop(step: StaticReverseStep, timesteps: int, meter: BalanceMeter | None) -> None:
    """The noisy reverse steps ``T-1 .. 1`` of one batch through ``step`` (what :func:`sample` does with
    ``static=True``, without drawing ``x_T`` or capturing again)."""
    x = step.x
    for t in range(timesteps - 1, 0, -1):
        x = step(x, t)
        if meter is not None:
            meter.record(timesteps - 1 - t, step.norms)


def bench_ddpm(profile: str, device: str, batch: int | None, channels: int, train_steps: int,
               sampling_steps: int, sampling_rounds: int, samples: int | None, rounds: int,
               m_diff_samples: int, profile_steps: int = PROFILED_STEPS, echo: Callable[[str], None] = print) -> None:
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
    schedule_train = build_schedule(s, dev)
    variants = training_variants(s, dev)
    steps = {}
    for v in variants:
        try:
            steps[v.label(dev)] = build_step(v, s, dev, batch, channels, schedule_train)
        except RuntimeError as exc:  # a network whose step cannot be captured: said, then timed eagerly
            echo(f"  capture failed for {v.label(dev)}: {' '.join(str(exc).split())[:300]}; timed eagerly")
            steps[v.label(dev)] = build_step(dataclasses.replace(v, captured=False), s, dev, batch, channels,
                                             schedule_train)
    for fn in steps.values():  # warm-up (allocator, kernels; the captured ones are warm since capture)
        fn()
    seconds = best_of(steps, rounds, train_steps, dev)
    how = "captured: each step one CUDA graph" if dev.type == "cuda" else \
        "static: the step over static buffers, called directly (no CUDA graph on a CPU)"
    echo(f"\n1. training, batch {batch}, {train_steps} steps x {rounds} rounds (best round); {how}:")
    for name, sec in seconds.items():
        echo(f"  {name:58s} {count_parameters(steps[name].net) / 1e6:7.3f} M params  {batch / sec:9.1f} images/s")
    ours, theirs = (v.label(dev) for v in variants[:2]) if dev.type == "cuda" else (variants[0].label(dev),
                                                                                      variants[2].label(dev))
    eager = next(v.label(dev) for v in variants if v.network == "rdbench" and not v.captured)
    echo(f"  ratio rdbench / diffusers (both {'captured' if dev.type == 'cuda' else 'static'}): "
         f"{seconds[theirs] / seconds[ours]:.2f}x images/s")
    echo(f"  rdbench {'captured' if dev.type == 'cuda' else 'static'} / eager: {seconds[eager] / seconds[ours]:.2f}x"
         f"   (target on one H200: >= 30,000 images/s at batch 128)")
    for name in (ours, theirs) if profile_steps else ():
        echo(f"\n  top ops of {' '.join(name.split()[:3])} ({profile_steps} steps, torch.profiler, "
             f"{'GPU' if dev.type == 'cuda' else 'CPU'} time):")
        echo(top_kernels(steps[name], dev, profile_steps))
    trained_net = steps[ours].net
    del steps

    # 2. the probe's cost during sampling
    eps = network_predictor(trained_net, s.bf16, s.channels_last)
    schedule = NoiseSchedule(sampling_steps, s.schedule.beta_start, s.schedule.beta_end,
                             s.sampler.variance, s.sampler.final_noise, dev)
    shape = (channels, 32, 32)
    x_T = torch.randn((samples, *shape), generator=torch.Generator(device=dev).manual_seed(0), device=dev)
    meter_steps = BalanceMeter(samples, TERMS, device=dev)
    with torch.inference_mode():
        plain_step = StaticReverseStep(eps, schedule, x_T, torch.Generator(device=dev).manual_seed(1), False)
        probed_step = StaticReverseStep(eps, schedule, x_T, torch.Generator(device=dev).manual_seed(1), True)

    def plain() -> None:
        with torch.inference_mode():
            captured_sampling_loop(plain_step, sampling_steps, None)

    def probed() -> None:
        with torch.inference_mode():
            meter = BalanceMeter(samples, TERMS, device=dev)
            captured_sampling_loop(probed_step, sampling_steps, meter)
            meter.result()  # the one transfer of all recorded norms

    def eager_probed() -> None:
        meter = BalanceMeter(samples, TERMS, device=dev)
        sample(eps, schedule, samples, shape, torch.Generator(device=dev).manual_seed(0), dev, meter)
        meter.result()

    del meter_steps
    kind = "captured" if dev.type == "cuda" else "static"
    loops = {f"plain loop, {kind}": plain, f"with the probe, {kind}": probed, "with the probe, eager": eager_probed}
    # many short rounds, alternating the order
    sampling = interleaved(loops, sampling_rounds, sync=lambda: _sync(dev), alternate=True, warmup=True)
    times = sampling.seconds
    best = {name: sampling.best(name) for name in times}
    median = {name: sampling.median(name) for name in times}
    plain_name, probed_name = list(loops)[:2]
    echo(f"\n2. sampling, {samples} images x {sampling_steps} reverse steps x {sampling_rounds} rounds"
         f" ({kind}: one reverse step = one {'CUDA graph' if dev.type == 'cuda' else 'static-buffer call'}):")
    for name in times:
        echo(f"  {name:30s} {best[name] / sampling_steps * 1e3:9.3f} ms/step (best)  "
             f"{median[name] / sampling_steps * 1e3:9.3f} ms/step (median)")
    echo(f"  {kind} with the probe: {best[probed_name] / sampling_steps * 1e3:.3f} ms per reverse step for "
         f"{samples} images (target on one H200: <= 1 ms for 16 images)")
    echo("  end to end, the probe costs "
         f"{100 * (best[probed_name] / best[plain_name] - 1):+.2f} % (best), "
         f"{100 * (median[probed_name] / median[plain_name] - 1):+.2f} % (median) "
         f"of the plain {kind} loop (target <= 5 %)")
    # The same, isolated from the network's timing noise: the step arithmetic with and without the probe.
    extra = _probe_arithmetic_s(schedule, samples, shape, dev)
    per_step = median[plain_name] / sampling_steps
    echo(f"  isolated (eager arithmetic): the probe adds {extra * 1e6:.1f} us per step = "
         f"{100 * extra / per_step:.2f} % of the plain {kind} loop's {per_step * 1e3:.3f} ms/step")

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
                            paper.sampler.batch_size, (c, 32, 32), 0, dev, static=dev.type == "cuda")
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
