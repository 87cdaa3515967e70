"""Checks of the Triton Gray-Scott kernel on CPU tensors, run by test_grayscott_triton.py in a
subprocess under ``TRITON_INTERPRET=1`` (Triton decides at import time whether its library
functions run in the interpreter, so the variable must be set before torch imports triton).

    TRITON_INTERPRET=1 python tests/systems/triton_interpreter_checks.py kernel_matches_reference
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from rdbench.balance import BalanceMeter
from rdbench.config import load_system
from rdbench.systems import grayscott
from rdbench.systems.grayscott import TERMS, GrayScottSimulation, gray_scott_step
from rdbench.systems.grayscott_kernels import interpreter_on, launch_step

DU, DV, DT, DX = 1e-5, 0.5e-5, 2.0, 0.01


def smoke(case="spot", **overrides):
    return load_system("rd").resolve(case, "smoke", overrides)


def kernel_matches_reference():
    """Three rows with their own F and k, grids of 16 and 12 (not a power of two: masked lanes),
    tiles of 4 lines (several programs per row add into its norms), three steps ping-ponged, the
    check sums, and a frozen row copied unchanged."""
    assert interpreter_on()
    gen = torch.Generator().manual_seed(0)
    feed = torch.tensor([0.029, 0.04, 0.06])
    kill = torch.tensor([0.062, 0.06, 0.065])
    for n in (16, 12):
        u = 1 - 0.3 * torch.rand(3, n, n, generator=gen)
        v = 0.3 * torch.rand(3, n, n, generator=gen)
        state = torch.full((2, 3, n + 2, n + 2), -7.0)  # the halo of both buffers must stay untouched
        state[0, :, 1:-1, 1:-1], state[1, :, 1:-1, 1:-1] = u, v
        out = torch.full_like(state, -7.0)
        alive = torch.ones(3, dtype=torch.int8)
        for _ in range(3):
            sq, checks = torch.zeros(3, 4), torch.zeros(3, 2)
            launch_step(state, out, feed, kill, alive, sq, checks, DU, DV, DT, DX, tile_cells=4 * 16)
            ref = gray_scott_step(u, v, feed.view(3, 1, 1), kill.view(3, 1, 1), DU, DV, DT, DX)
            torch.testing.assert_close(out[0, :, 1:-1, 1:-1], ref.u, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(out[1, :, 1:-1, 1:-1], ref.v, rtol=1e-6, atol=1e-6)
            expected = torch.stack([t.square().sum((-2, -1)) for t in
                                    (ref.reaction_v, ref.diffusion_v, ref.reaction_u, ref.diffusion_u)], 1)
            torch.testing.assert_close(sq, expected, rtol=1e-5, atol=1e-8)
            torch.testing.assert_close(checks[:, 0], (ref.v - v).abs().sum((-2, -1)), rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(checks[:, 1], (ref.u + ref.v).sum((-2, -1)), rtol=1e-5, atol=1e-5)
            assert (out[:, :, 0] == -7.0).all() and (out[:, :, :, -1] == -7.0).all()
            u, v = ref.u, ref.v
            state, out = out, state
        # a frozen row: its state copied as it is; the others still step; nothing summed when not asked
        alive[1] = 0
        launch_step(state, out, feed, kill, alive, None, None, DU, DV, DT, DX, tile_cells=4 * 16)
        ref = gray_scott_step(u, v, feed.view(3, 1, 1), kill.view(3, 1, 1), DU, DV, DT, DX)
        assert torch.equal(out[:, 1, 1:-1, 1:-1], state[:, 1, 1:-1, 1:-1])
        torch.testing.assert_close(out[1, 0, 1:-1, 1:-1], ref.v[0], rtol=1e-6, atol=1e-6)


def _run(settings, seeds, kernel):
    sim = GrayScottSimulation([s.model_copy(update={"kernel": kernel}) for s in settings], seeds)
    meter = BalanceMeter(sim.batch, TERMS)
    steps = sim.run(meter)
    return sim, meter, steps


def simulation_matches_eager():
    """Rows with their own F and k, one that stops early (the homogeneous start: its change is 0),
    one that diverges (an absurd feed), every step recorded and every 3rd: the Triton simulation
    gives the eager one's fields, norms, early stops and divergence steps. The staged norms are
    handed to the meter in blocks of 4 here, so the hand-over runs many times."""
    assert interpreter_on()
    grayscott.STAGED_STEPS = 4
    base = {"grid_size": 12, "initial.square_size": 4, "steps": 20, "early_stop.check_every": 10,
            "early_stop.min_steps": 10}
    for record_every in (1, 3):
        common = {**base, "record_every": record_every}
        rows = [smoke(**common), smoke("stripe", **common),
                smoke(**{**common, "initial.square_size": 0, "initial.noise": 0.0}),
                smoke(**common, feed=1.0e6)]
        eager, m_eager, steps_eager = _run(rows, [0, 1, 2, 3], "eager")
        triton, m_triton, steps_triton = _run(rows, [0, 1, 2, 3], "triton")
        assert triton.kernel == "triton" and steps_triton == steps_eager == 20
        assert triton.diverged_at.tolist() == eager.diverged_at.tolist() and eager.diverged_at[3] > 0
        assert m_triton.stopped().tolist() == m_eager.stopped().tolist() == [False, False, True, True]
        torch.testing.assert_close(triton.v[:3], eager.v[:3], rtol=1e-5, atol=1e-6)
        for row in range(3):
            a, b = m_triton.result([row]), m_eager.result([row])
            assert a.steps.tolist() == b.steps.tolist()
            for name in TERMS:
                np.testing.assert_allclose(a.norms[name], b.norms[name], rtol=1e-4, atol=1e-9)


def fallback_hands_over_mid_run():
    """A Triton kernel that fails on a GPU hands over to the compiled step mid-run (here the eager
    one stands in for it, to skip a compile): the staged norms reach the meter, the halo the kernel
    never wrote is filled, and the run ends as an eager run from the start does."""
    import warnings

    assert interpreter_on()
    settings = smoke(**{"grid_size": 12, "initial.square_size": 4, "steps": 12, "early_stop.tolerance": 0.0})
    rows = [settings, smoke("stripe", **{"grid_size": 12, "initial.square_size": 4, "steps": 12})]
    eager = GrayScottSimulation([s.model_copy(update={"kernel": "eager"}) for s in rows], [0, 1])
    m_eager = BalanceMeter(2, TERMS)
    switched = GrayScottSimulation([s.model_copy(update={"kernel": "triton"}) for s in rows], [0, 1])
    m_switched = BalanceMeter(2, TERMS)
    grayscott.compiled_step = lambda: grayscott._EagerStep(switched.u, switched.feed, switched.kill)
    with torch.inference_mode():
        for n in range(12):
            if n == 5:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    switched._fall_back_from_triton(m_switched, RuntimeError("no GPU compiler"))
                assert "the Triton kernel failed (RuntimeError: no GPU compiler)" in str(caught[0].message)
                assert switched.kernel == "compiled" and m_switched.n_recorded == 5
            switched.advance(m_switched, n)
            eager.advance(m_eager, n)
    torch.testing.assert_close(switched.v, eager.v, rtol=1e-5, atol=1e-6)
    for name in TERMS:
        np.testing.assert_allclose(m_switched.result().norms[name], m_eager.result().norms[name], rtol=1e-4, atol=1e-9)


if __name__ == "__main__":
    torch.set_flush_denormal(True)
    globals()[sys.argv[1]]()
    print("ok", sys.argv[1])
