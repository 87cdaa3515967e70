"""The Gray-Scott explicit Euler step as one Triton kernel (``kernel: triton``; Eqs. 1, 12, 15).

Why a kernel of its own (issue 19). A 64x64 phase map on one H200 (4,096 rows of a
200x200 grid, 5,000 steps, ``scripts/gpu_phase_check.sh``) ran at 1.75e10 cell-updates/s,
6.7 % of the memory-bandwidth bound: 9.3 ms per step of map wall time against 0.64 ms
for one read and one write of the state (4,096 x 200^2 cells x 16 B at 4,160 GB/s).
Where that time goes, read from the code path as it stood (``kernel: compiled``; the CPU
build's operators counted with ``python scripts/rd_step_anatomy.py``; no GPU was at hand
to profile the CUDA one, so the split there is an estimate; docs/benchmarks.md has the
numbers):

* **The map's wall time is not the step's.** ``wall_time_s`` is the sum of
  :func:`rdbench.phase.simulate.run_chunk`: it also holds building the batch (each row's
  seeded float64 noise drawn on the CPU, row after row: milliseconds a row), the first
  ``torch.compile`` of the two step graphs (tens of seconds with a cold kernel cache),
  and after the steps, per row: :meth:`BalanceMeter.result` (a gather on the device and
  a host synchronisation per row: the per-row read-back the last review noted) and the
  row's label (scipy's connected components, milliseconds a row). All of it is divided
  by 5,000 in the 9.3 ms.
* **The compiled step moves 24 B per cell.** Inductor reduces the four term norms in a
  pass that recomputes the stencil (to (rows, N) partials, then a small second
  reduction) and writes the update in another pass: the state is read twice and
  written once, through the padded layout's interior views (a 202-float row pitch, no
  aligned vector loads). :func:`~rdbench.systems.grayscott.fill_halo` adds four small
  copies a step and :meth:`BalanceMeter.record` one more; every launch goes through
  dynamo's guards on the CPU (~0.1-0.2 ms a step), which the GPU waits for once its
  part of a step is a fraction of a millisecond.
* **Every ``check_every`` (100) steps** the divergence test sums u and v of every row
  (a full extra read) and the early stop reads the spare and current v once more; two
  host synchronisations drain the launch queue.
* A frozen (diverged) row was copied back row by row every step.

What :func:`gray_scott_kernel` does instead, per step: **one launch**. Each program
takes a tile of ``BLOCK_I`` grid lines of one row (sample), reads u and v with the
periodic wrap computed by index (``(i +- 1) mod N``; the halo is never read or
written, so :func:`fill_halo` goes), writes u and v of the next state, and, on a
recorded step (``MEASURED``), adds its tile's sums of squares of the four rates
(``reaction_v, diffusion_v, reaction_u, diffusion_u``, the order of
:data:`~rdbench.systems.grayscott.TERMS`) into the row's slot of a staging buffer
with four atomic adds. Nothing is read back: :class:`TritonStep` keeps
``block_steps`` recorded steps of sums of squares on the device and hands them to the
meter in one ``sqrt`` and one copy (:meth:`BalanceMeter.record_many`). On a check step
(``CHECK``) the same pass also adds, per row, sum |v_{n+1} - v_n| (the early stop's
change) and sum (u_{n+1} + v_{n+1}) (NaN/Inf iff the new state is, or it passed ~1e38:
the divergence test); one (rows, 2) read-back per check, no extra pass over the state.
A frozen row is one flag per row (``alive``): the kernel copies its state unchanged.

Bytes per cell update: u and v read once (8 B, the neighbours come from cache) and
written once (8 B): 16 B, the bound ``rdbench bench rd`` and the device script print.

The kernel runs on CUDA tensors through ``triton.jit`` and on CPU tensors through
Triton's interpreter (numpy, one program at a time: for tests, never for speed), which
must be switched on with ``TRITON_INTERPRET=1`` before triton is first imported (it
decides at import time whether ``tl.sum`` and the other library functions are
interpreted, so the tests run it in a subprocess).
float32 only (Triton passes the scalar constants as float32).
"""

from __future__ import annotations

import functools

import torch

try:  # Triton comes with torch's CUDA builds; without it the other step kernels run
    import triton.language as tl
except ImportError:  # pragma: no cover - a CPU-only torch
    tl = None

TERMS_COUNT = 4  # reaction_v, diffusion_v, reaction_u, diffusion_u (grayscott.TERMS)
CHECKS_COUNT = 2  # per row: sum |v_{n+1} - v_n|, sum (u_{n+1} + v_{n+1})
# A program's tile: about TILE_CELLS cells (BLOCK_I lines x BLOCK_J columns), CELLS_PER_THREAD of
# them per thread. Compiled offline for an H100/H200 (sm_90, `test_the_kernel_compiles_for_sm_90`):
# 4096 cells on 4 warps (32 a thread) took 255 registers and spilled; 2048 on 8 warps (8 a thread)
# take about 90 and spill nothing. The best tile is for a GPU run to tune.
TILE_CELLS = 2048
CELLS_PER_THREAD = 8
STAGED_STEPS = 256  # recorded steps of norms kept on the device before one hand-over to the meter
BYTES_PER_UPDATE = 16  # float32: u and v read once and written once per cell update


def available() -> bool:
    """Whether Triton can be imported here."""
    return tl is not None


def gray_scott_kernel(state, out, feed, kill, alive, sq, checks,
                      rows, n, pitch, field_stride, tiles,
                      diffusion_u, diffusion_v, dt, inv_dx2,
                      MEASURED: tl.constexpr, CHECK: tl.constexpr,  # noqa: N803
                      BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):  # noqa: N803
    """One explicit Euler step of Eq. (1) for ``BLOCK_I`` grid lines of one row (sample).

    ``state``/``out``: the padded ``(2, rows, n + 2, n + 2)`` buffers (u then v); only the
    interior is read and written, the neighbours wrap by index. ``sq``: ``(rows, 4)`` sums
    of squares of Eqs. (12), (15) and the activator's pair, added to when ``MEASURED``;
    ``checks``: ``(rows, 2)`` sum |dv| and sum (u + v) of the new state, added to when ``CHECK``.
    """
    pid = tl.program_id(0)
    row = (pid // tiles).to(tl.int64)  # 64-bit offsets: rows x (n + 2)^2 passes 2^31 on large grids
    tile = pid % tiles
    i = tile * BLOCK_I + tl.arange(0, BLOCK_I)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    mask = (i < n) & (j < n)
    up = tl.where(i == 0, n - 1, i - 1)
    down = tl.where(i == n - 1, 0, i + 1)
    left = tl.where(j == 0, n - 1, j - 1)
    right = tl.where(j == n - 1, 0, j + 1)
    base = row * pitch * pitch + pitch + 1  # the row's interior (0, 0)
    centre = base + i * pitch + j
    u_ptr = state
    v_ptr = state + field_stride
    u = tl.load(u_ptr + centre, mask=mask, other=0.0)
    v = tl.load(v_ptr + centre, mask=mask, other=0.0)
    u_nb = (tl.load(u_ptr + base + up * pitch + j, mask=mask, other=0.0)
            + tl.load(u_ptr + base + down * pitch + j, mask=mask, other=0.0)
            + tl.load(u_ptr + base + i * pitch + left, mask=mask, other=0.0)
            + tl.load(u_ptr + base + i * pitch + right, mask=mask, other=0.0))
    v_nb = (tl.load(v_ptr + base + up * pitch + j, mask=mask, other=0.0)
            + tl.load(v_ptr + base + down * pitch + j, mask=mask, other=0.0)
            + tl.load(v_ptr + base + i * pitch + left, mask=mask, other=0.0)
            + tl.load(v_ptr + base + i * pitch + right, mask=mask, other=0.0))
    f = tl.load(feed + row)
    k = tl.load(kill + row)
    live = tl.load(alive + row) != 0
    uvv = u * v * v
    reaction_u = f * (1.0 - u) - uvv
    reaction_v = uvv - (f + k) * v
    diffusion_u_term = diffusion_u * ((u_nb - 4.0 * u) * inv_dx2)
    diffusion_v_term = diffusion_v * ((v_nb - 4.0 * v) * inv_dx2)
    u_new = tl.where(live, u + dt * (reaction_u + diffusion_u_term), u)
    v_new = tl.where(live, v + dt * (reaction_v + diffusion_v_term), v)
    tl.store(out + centre, u_new, mask=mask)
    tl.store(out + field_stride + centre, v_new, mask=mask)
    if MEASURED:
        tl.atomic_add(sq + row * 4 + 0, tl.sum(tl.sum(tl.where(mask, reaction_v * reaction_v, 0.0), 1), 0))
        tl.atomic_add(sq + row * 4 + 1, tl.sum(tl.sum(tl.where(mask, diffusion_v_term * diffusion_v_term, 0.0), 1), 0))
        tl.atomic_add(sq + row * 4 + 2, tl.sum(tl.sum(tl.where(mask, reaction_u * reaction_u, 0.0), 1), 0))
        tl.atomic_add(sq + row * 4 + 3, tl.sum(tl.sum(tl.where(mask, diffusion_u_term * diffusion_u_term, 0.0), 1), 0))
    if CHECK:
        tl.atomic_add(checks + row * 2 + 0, tl.sum(tl.sum(tl.where(mask, tl.abs(v_new - v), 0.0), 1), 0))
        tl.atomic_add(checks + row * 2 + 1, tl.sum(tl.sum(tl.where(mask, u_new + v_new, 0.0), 1), 0))


def interpreter_on() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1`` when triton was imported)."""
    import triton

    return bool(triton.knobs.runtime.interpret)


@functools.cache
def _launcher():
    """``triton.jit`` of the kernel, on first use (so importing this module never needs Triton):
    compiled for CUDA, or Triton's interpreter when ``TRITON_INTERPRET=1`` was set before
    triton was first imported (its ``tl.sum`` is decorated at import time)."""
    import triton

    return triton.jit(gray_scott_kernel)


def warps(block_i: int, block_j: int) -> int:
    """Warps of a program: :data:`CELLS_PER_THREAD` cells a thread, 1 to 16 warps."""
    return max(1, min(16, block_i * block_j // (32 * CELLS_PER_THREAD)))


def tile_shape(n: int, tile_cells: int = TILE_CELLS) -> tuple[int, int]:
    """(BLOCK_I, BLOCK_J): whole grid lines (BLOCK_J = the next power of two >= n) and
    enough of them for about ``tile_cells`` cells (at most the power of two >= n)."""
    block_j = 1 << max(n - 1, 1).bit_length()
    return max(1, min(tile_cells // block_j, block_j)), block_j


SIGNATURE = {"state": "*fp32", "out": "*fp32", "feed": "*fp32", "kill": "*fp32", "alive": "*i8", "sq": "*fp32",
             "checks": "*fp32", "rows": "i32", "n": "i32", "pitch": "i32", "field_stride": "i32", "tiles": "i32",
             "diffusion_u": "fp32", "diffusion_v": "fp32", "dt": "fp32", "inv_dx2": "fp32",
             "MEASURED": "constexpr", "CHECK": "constexpr", "BLOCK_I": "constexpr", "BLOCK_J": "constexpr"}


def compile_for(arch: int, n: int, measured: bool, check: bool):
    """The kernel compiled ahead of time for CUDA compute capability ``arch`` (e.g. 90: H100/H200)
    and grid size ``n``, without a GPU (Triton's own ptxas): its PTX, cubin and metadata."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    block_i, block_j = tile_shape(n)
    source = ASTSource(fn=_launcher(), signature=SIGNATURE,
                       constexprs={"MEASURED": measured, "CHECK": check, "BLOCK_I": block_i, "BLOCK_J": block_j})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps(block_i, block_j)})


def launch_step(state: torch.Tensor, out: torch.Tensor, feed: torch.Tensor, kill: torch.Tensor,
                alive: torch.Tensor, sq: torch.Tensor | None, checks: torch.Tensor | None,
                diffusion_u: float, diffusion_v: float, dt: float, dx: float,
                tile_cells: int = TILE_CELLS) -> None:
    """One step of every row from ``state`` into ``out`` (both ``(2, rows, n + 2, n + 2)``,
    contiguous float32); adds into ``sq`` ``(rows, 4)`` and ``checks`` ``(rows, 2)`` when given."""
    _, rows, pitch, _ = state.shape
    n = pitch - 2
    block_i, block_j = tile_shape(n, tile_cells)
    tiles = -(-n // block_i)
    if state.device.type != "cuda" and not interpreter_on():
        raise RuntimeError("the Triton Gray-Scott kernel runs on CPU tensors only under Triton's interpreter: "
                           "set TRITON_INTERPRET=1 before torch or triton is imported")
    kernel = _launcher()
    dummy = feed
    kernel[(rows * tiles,)](
        state, out, feed, kill, alive, dummy if sq is None else sq, dummy if checks is None else checks,
        rows, n, pitch, rows * pitch * pitch, tiles,
        float(diffusion_u), float(diffusion_v), float(dt), 1.0 / (dx * dx),
        MEASURED=sq is not None, CHECK=checks is not None, BLOCK_I=block_i, BLOCK_J=block_j,
        num_warps=warps(block_i, block_j),
    )


class TritonStep:
    """The Triton path of :class:`~rdbench.systems.grayscott.GrayScottSimulation`: launches
    :func:`gray_scott_kernel` once per step and keeps the norms of up to ``block_steps``
    recorded steps on the device (sums of squares) until :meth:`flush` hands them to the
    meter at once. Allocated once; nothing per step but the launch."""

    def __init__(self, rows: int, device: torch.device, block_steps: int):
        self.sq = torch.zeros((block_steps, rows, TERMS_COUNT), dtype=torch.float32, device=device)
        self.checks = torch.zeros((rows, CHECKS_COUNT), dtype=torch.float32, device=device)
        self.alive = torch.ones(rows, dtype=torch.int8, device=device)
        self.steps: list[int] = []  # the recorded steps staged in ``sq``, in order

    def __call__(self, state, out, feed, kill, constants, measured: bool, step: int, check: bool,
                 meter=None) -> None:
        if measured and len(self.steps) == self.sq.shape[0]:
            self.flush(meter)
        sq = self.sq[len(self.steps)] if measured else None
        if check:
            self.checks.zero_()
        launch_step(state, out, feed.view(-1), kill.view(-1), self.alive, sq, self.checks if check else None,
                    *constants)
        if measured:  # staged once launched: a launch that failed leaves no step behind
            self.steps.append(step)

    def flush(self, meter) -> None:
        """Hand the staged norms (square roots of the sums) to ``meter`` in one copy; no host sync."""
        if self.steps:
            count = len(self.steps)
            meter.record_many(self.steps, self.sq[:count].sqrt())
            self.sq[:count].zero_()
            self.steps = []

    def check_sums(self, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Of the last check step, per row: mean |v_{n+1} - v_n| and sum (u_{n+1} + v_{n+1}), read
        back to the CPU at once (the check step's one host synchronisation)."""
        checks = self.checks.cpu()
        return checks[:, 0] / cells, checks[:, 1]

    def freeze(self, rows) -> None:
        """Rows the kernel copies unchanged from now on (diverged ones)."""
        self.alive[torch.as_tensor(list(rows), dtype=torch.long, device=self.alive.device)] = 0
