"""Replaying a function over static buffers as one CUDA graph (the DDPM training step, the reverse step).

Decision (issue 19): an explicit :class:`torch.cuda.CUDAGraph` of the whole step, not
``torch.compile``. On the H200 the issue measured, the eager training step was bound
by the CPU launching kernels (77 ms of CPU time against 13.7 ms of GPU time per
step); one hand-made graph of the unchanged eager step gave 3.4x, while
``torch.compile`` of the forward alone gave nothing after 66 s of compilation. A
graph removes exactly the launch cost, compiles nothing, costs one warm-up and one
capture (seconds), and keeps every kernel the eager step runs, so the captured
step computes what the eager one computes. ``torch.compile(mode="reduce-overhead")``
of the whole step would add a compile of forward, backward and the optimizer (minutes
for the paper U-Net) for fused elementwise kernels on top of the same graphs; it
stays possible later, as the function captured here is plain torch.

A function ``fn`` is capturable when it reads and writes only tensors that outlive
it (static buffers: parameters, gradients, optimizer state, an index buffer, the
loss accumulator), never reads a tensor's value on the host (no ``.item()``, no
``if tensor``), and draws random numbers only from generators registered with the
graph (the default CUDA generator is registered by torch; others are passed in
``generators``). Replaying the graph then does what calling ``fn`` does, from the
generators' current states: the philox offset of every registered generator
advances by the graph's total at each replay, so ``get_state``/``set_state`` (the
checkpoint) keep working.

On a CPU there is no graph: the same ``fn`` is called directly, which is how the tests
check the captured logic against the eager loop (``tests/systems/test_ddpm_capture.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Literal

import torch

CaptureMode = Literal["auto", "on", "off"]
WARMUP_CALLS = 2  # eager calls on a side stream before capture: lazy state, cuDNN/cuBLAS plans, the allocator


def static_step_wanted(mode: CaptureMode, device: torch.device) -> bool:
    """Whether ``mode`` runs the static-buffer step on ``device``: ``auto`` on CUDA only, ``on`` everywhere
    (a CUDA graph on CUDA, a direct call elsewhere), ``off`` never (the eager loop)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def bf16_autocast(enabled: bool):
    """bf16 autocast on CUDA without the weight-cast cache (capture requires that; each weight is cast
    once per forward anyway); a null context when not enabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)


class Replay:
    """``fn`` captured once as a CUDA graph on CUDA (then ``__call__`` replays it), called directly elsewhere.

    Capture runs ``fn`` ``WARMUP_CALLS`` times on a side stream first; those calls
    really execute, so ``reset`` (called after them, before capture) must put every
    static buffer and generator back the way it was. ``before_each`` runs before
    every call on the host, outside the graph (e.g. ``zero_grad`` on a CPU, where
    gradients are not static).
    """

    def __init__(
        self,
        fn: Callable[[], None],
        device: torch.device,
        *,
        reset: Callable[[], None] | None = None,
        generators: Sequence[torch.Generator] = (),
        before_each: Callable[[], None] | None = None,
    ):
        self.fn = fn
        self.before_each = before_each
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda":
            self.graph = capture(fn, reset=reset, generators=generators, before_capture=before_each)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if self.before_each is not None:
            self.before_each()
        self.fn()


def capture(
    fn: Callable[[], None],
    *,
    reset: Callable[[], None] | None = None,
    generators: Sequence[torch.Generator] = (),
    before_capture: Callable[[], None] | None = None,
) -> torch.cuda.CUDAGraph:
    """Warm ``fn`` up on a side stream, ``reset``, then capture one call of it as a graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_CALLS):
            if before_capture is not None:
                before_capture()
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if reset is not None:
        reset()
    if before_capture is not None:
        before_capture()
    graph = torch.cuda.CUDAGraph()
    default = torch.cuda.default_generators[torch.cuda.current_device()]
    for generator in generators:
        if generator is not default:  # the default one is registered by torch itself
            graph.register_generator_state(generator)
    # thread_local: a metrics or progress thread touching CUDA elsewhere does not void the capture
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        fn()
    torch.cuda.synchronize()
    return graph


class Snapshot:
    """Copies of some tensors and generator states, put back in place (same storage) by :meth:`restore`.

    Tensors in ``appeared`` that did not exist when the snapshot was taken (AdamW's
    lazily created moments) are zeroed: their state before the first step.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], generators: Sequence[torch.Generator] = ()):
        self.tensors = list(tensors)
        self.copies = [t.detach().clone() for t in self.tensors]
        self.generators = list(generators)
        self.states = [g.get_state() for g in self.generators]

    @torch.no_grad()
    def restore(self, appeared: Sequence[torch.Tensor] = ()) -> None:
        known = {id(t) for t in self.tensors}
        for tensor, copy in zip(self.tensors, self.copies, strict=True):
            tensor.copy_(copy)
        for tensor in appeared:
            if id(tensor) not in known:
                tensor.zero_()
        for generator, state in zip(self.generators, self.states, strict=True):
            generator.set_state(state)
