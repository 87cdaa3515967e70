"""The Gray-Scott solver: stencil, steady state, batching, stability checks."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from rdbench.balance import BalanceMeter
from rdbench.config import ConfigError, load_system
from rdbench.systems.grayscott import (
    TERMS,
    GrayScott,
    GrayScottSimulation,
    SimulationDiverged,
    fill_halo,
    gray_scott_step,
    laplacian,
    padded_laplacian,
)


def smoke(case="spot", **overrides):
    return load_system("rd").resolve(case, "smoke", overrides)


def test_laplacian_matches_scipy_with_periodic_wrap():
    x = torch.rand(2, 17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dx = 0.01
    ours = laplacian(x, dx).numpy()
    for i in range(2):
        expected = scipy.ndimage.laplace(x[i].numpy(), mode="wrap") / dx**2
        np.testing.assert_allclose(ours[i], expected, rtol=1e-12, atol=1e-8)


def test_padded_laplacian_equals_the_periodic_one():
    x = torch.rand(3, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    padded = torch.zeros(3, 2, 11, 11, dtype=torch.float64)
    padded[..., 1:-1, 1:-1] = x
    fill_halo(padded)
    torch.testing.assert_close(padded_laplacian(padded, 0.1), laplacian(x, 0.1), rtol=1e-12, atol=1e-12)


def test_one_step_of_the_simulation_is_the_reference_step():
    """The in-place step on the padded state (eager here) computes Eq. (1) and Eqs. (12), (15) as written."""
    s = smoke(dtype="float64")
    sim = GrayScottSimulation([smoke(dtype="float64"), smoke("stripe", dtype="float64")], [0, 1])
    u, v = sim.u.clone(), sim.v.clone()
    meter = BalanceMeter(2, TERMS)
    sim.advance(meter, 0)
    ref = gray_scott_step(u, v, sim.feed, sim.kill, s.diffusion_u, s.diffusion_v, s.dt, s.dx)
    torch.testing.assert_close(sim.u, ref.u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sim.v, ref.v, rtol=1e-12, atol=1e-12)
    expected = BalanceMeter(2, TERMS)
    expected.observe(0, [ref.reaction_v, ref.diffusion_v, ref.reaction_u, ref.diffusion_u])
    for name in TERMS:
        np.testing.assert_allclose(meter.result().norms[name], expected.result().norms[name], rtol=1e-10)


def test_resident_memory_is_flat_in_the_number_of_steps():
    """8 rows of 64x64, metrics every step: the resident set after 4N steps is that after N.

    Not a timing test. A step that allocated one fresh row-sized array (128 KB) a step and kept
    it would add 190 MB here; the tolerance covers the meter's own buffer (a few hundred KB).
    """
    psutil = pytest.importorskip("psutil")
    s = smoke(**{"grid_size": 64, "steps": 2000, "initial.square_size": 10, "early_stop.tolerance": 0.0})
    sim = GrayScottSimulation([s] * 8, list(range(8)))
    meter = BalanceMeter(8, TERMS)
    process = psutil.Process()
    with torch.inference_mode():
        for n in range(500):
            sim.advance(meter, n)
        after_n = process.memory_info().rss
        for n in range(500, 2000):
            sim.advance(meter, n)
        after_4n = process.memory_info().rss
    assert after_4n - after_n < 8 * 2**20, f"RSS grew by {(after_4n - after_n) / 2**20:.1f} MiB"


def test_manufactured_steady_state_gives_ratio_one():
    """Choose u so that dv/dt = 0 exactly: then |reaction_v| = |diffusion_v| and R = 1 (Eqs. 12, 15, 18)."""
    n, dx, feed, kill, du, dv = 64, 0.01, 0.029, 0.062, 1e-5, 0.5e-5
    xs = torch.linspace(0, 2 * np.pi, n + 1, dtype=torch.float64)[:-1]
    v = (0.3 + 0.1 * torch.sin(xs)[:, None] * torch.cos(2 * xs)[None, :])[None]
    lap_v = laplacian(v, dx)
    u = ((feed + kill) * v - dv * lap_v) / v**2
    f = torch.full((1, 1, 1), feed, dtype=torch.float64)
    k = torch.full((1, 1, 1), kill, dtype=torch.float64)
    meter = BalanceMeter(1)
    for t in range(5):
        s = gray_scott_step(u, v, f, k, du, dv, dt=1.0, dx=dx)
        torch.testing.assert_close(s.v, v)  # v does not move
        meter.observe(t, [s.reaction_v, s.diffusion_v])
    r = meter.result()
    assert r.R == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(r.R_t, 1.0, atol=1e-12)


def test_batched_rows_equal_separate_runs():
    settings = [smoke("spot"), smoke("stripe")]
    together = GrayScottSimulation(settings, [3, 4])
    meter = BalanceMeter(2, TERMS)
    together.run(meter)
    for row, (s, seed) in enumerate(zip(settings, [3, 4], strict=True)):
        alone = GrayScottSimulation([s], [seed])
        m = BalanceMeter(1, TERMS)
        alone.run(m)
        torch.testing.assert_close(together.v[row], alone.v[0])
        np.testing.assert_allclose(meter.result([row]).R_t, m.result().R_t, rtol=1e-6)


def test_seed_changes_noise_and_is_deterministic():
    a = GrayScottSimulation([smoke()], [0])
    b = GrayScottSimulation([smoke()], [0])
    c = GrayScottSimulation([smoke()], [1])
    assert torch.equal(a.u, b.u)
    assert not torch.equal(a.u, c.u)


def test_unstable_dt_is_rejected_before_running():
    with pytest.raises(ConfigError, match=r"unstable dt=3.0.*dt <= dx\^2"):
        GrayScott().check(smoke(dt=3.0, grid_size=200, domain_length=2.0))


def test_a_diverging_row_is_frozen_and_the_others_run_on_as_alone():
    # a stable diffusion dt but an absurd feed rate: that row's reaction term explodes
    normal, bad = smoke(), smoke(feed=1.0e6)
    sim = GrayScottSimulation([normal, bad], [0, 0])
    meter = BalanceMeter(2, TERMS)
    assert sim.run(meter) == normal.steps  # no raise: the batch ran to the end
    assert sim.diverged_at[0] == -1 and sim.diverged_at[1] > 0
    assert sim.divergence(0) is None
    assert str(sim.divergence(1)).startswith(f"Gray-Scott state became NaN/Inf by step {sim.diverged_at[1]} (feed=1e+06")
    assert meter.stopped().tolist() == [False, True]
    alone = GrayScottSimulation([normal], [0])
    m = BalanceMeter(1, TERMS)
    alone.run(m)
    torch.testing.assert_close(sim.v[0], alone.v[0])
    assert meter.result([0]).R == pytest.approx(m.result().R, rel=1e-6)
    frozen = sim.v[1].clone()
    sim.advance()
    torch.testing.assert_close(sim.v[1], frozen, rtol=0, atol=0, equal_nan=True)  # frozen: no update


def test_a_diverging_job_fails_alone_with_its_reason():
    from rdbench.systems.base import Job, RunContext

    class Sink:
        def log_figure(self, *a, **k):
            pass

    jobs = [Job("spot", 0, smoke(), Sink()), Job("spot", 1, smoke(feed=1.0e6, allow_unstable=True), Sink())]  # the estimate refuses it
    ok, failed = GrayScott().run(jobs, RunContext())
    assert isinstance(failed, SimulationDiverged) and "seed=1" in str(failed) and "\n" not in str(failed)
    (alone,) = GrayScott().run(jobs[:1], RunContext())
    assert ok.balance.R == pytest.approx(alone.balance.R, rel=1e-6)
    assert ok.controls["no_pattern"].R == pytest.approx(alone.controls["no_pattern"].R, rel=1e-6)


def test_early_stop_freezes_the_series():
    s = smoke(early_stop={"tolerance": 1.0, "min_steps": 10, "check_every": 10})
    meter = BalanceMeter(1, TERMS)
    steps = GrayScottSimulation([s], [0]).run(meter)
    assert steps == 10 and meter.result().n_steps == 10


def test_record_every_subsamples_but_keeps_the_last_step():
    s = smoke(record_every=7)
    meter = BalanceMeter(1, TERMS)
    GrayScottSimulation([s], [0]).run(meter)
    steps = meter.result().steps
    assert steps[0] == 0 and steps[1] == 7 and steps[-1] == s.steps - 1


@pytest.mark.slow
def test_compiled_step_matches_eager():
    s = smoke()
    eager = GrayScottSimulation([s], [0])
    fused = GrayScottSimulation([s.model_copy(update={"kernel": "compiled"})], [0])
    m1, m2 = BalanceMeter(1, TERMS), BalanceMeter(1, TERMS)
    eager.run(m1)
    fused.run(m2)
    torch.testing.assert_close(eager.v, fused.v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m1.result().R_t, m2.result().R_t, rtol=1e-3)


def test_reference_controls_run_in_the_same_batch():
    from rdbench.systems.base import Job, RunContext

    class Sink:
        figures = {}

        def log_figure(self, figure, artifact_file):
            self.figures[artifact_file] = figure

    s = smoke()
    sink = Sink()
    (outcome,) = GrayScott().run([Job("spot", 0, s, sink)], RunContext())
    assert set(sink.figures) == {"fields/final_u.png", "fields/final_v.png"}
    field_axes, colour_bar = sink.figures["fields/final_v.png"].axes  # the field and its colour bar
    assert field_axes.get_title() == f"v: spot, F={s.feed:g}, k={s.kill:g}, step {s.steps}"
    assert colour_bar.get_ylabel() == "v"
    assert set(outcome.controls) == {"no_pattern", "homogeneous"}
    homogeneous = outcome.controls["homogeneous"]
    assert homogeneous.M_react == 0.0 and homogeneous.M_diff == 0.0  # u = 1, v = 0 is a fixed point
    assert np.isnan(homogeneous.R)  # 0 / 0: R is undefined when both terms vanish
    no_pattern = outcome.controls["no_pattern"]
    assert np.isfinite(no_pattern.R) and no_pattern.M_react < outcome.balance.M_react


@pytest.mark.slow
def test_bench_rd_prints_the_ratios():
    from click.testing import CliRunner

    from rdbench.cli import main

    result = CliRunner().invoke(main, ["bench", "rd", "--grid-size", "32", "--steps", "20", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    assert "ratio fused-with-metrics / numpy:" in result.output
    assert "rdbench etdrk4, metrics every step" in result.output and "an ETDRK4 step costs" in result.output
    assert "recording metrics every step costs" in result.output
    assert "bandwidth bound:" in result.output and "% of the bound" in result.output
    assert "triton" not in result.output  # on CPU the Triton kernel would run in the interpreter: not shown


def test_kernel_rates_time_the_run_of_each_kernel_against_the_bound():
    from rdbench.bench.rd import kernel_rates

    lines = []
    rates = kernel_rates(16, 20, 2, ["eager"], "cpu", rounds=1, echo=lines.append)
    assert set(rates) == {"eager"} and rates["eager"] > 0
    assert "kernel eager" in lines[1] and "% of the bound" in lines[1] and lines[-1].startswith("peak RSS")


def test_bench_rd_memory_prints_rss_at_both_marks_and_the_growth():
    from click.testing import CliRunner

    from rdbench.cli import main

    args = ["bench", "rd", "--memory", "--eager", "--grid-size", "16", "--steps", "20", "--batch", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "after     20 steps:" in result.output and "after    200 steps:" in result.output
    assert "growth from 20 to 200 steps:" in result.output and "(target <= 5 %)" in result.output


@pytest.mark.slow
def test_without_a_working_compiler_the_fused_step_falls_back_to_eager(monkeypatch, tmp_path):
    """A machine without a C++ compiler (a slim image) still runs the paper profile, eagerly."""
    import torch._dynamo
    import torch._inductor.config

    import rdbench.systems.grayscott as gs

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # cold cache: the compiler must run
    monkeypatch.setattr(gs, "_compiled", None)
    torch._dynamo.reset()
    s = smoke()
    fused = GrayScottSimulation([s.model_copy(update={"kernel": "compiled"})], [0])
    # inductor's own patch (monkeypatch would delete the setting on undo, breaking every later compile)
    with torch._inductor.config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}), \
            pytest.warns(RuntimeWarning, match="torch.compile failed .*running the eager step"):
        fused.run(BalanceMeter(1, TERMS))
    eager = GrayScottSimulation([s], [0])
    eager.run(BalanceMeter(1, TERMS))
    torch.testing.assert_close(fused.v, eager.v)
    torch._dynamo.reset()
    monkeypatch.setattr(gs, "_compiled", None)  # the next compile starts clean
    assert torch._inductor.config.cpp.cxx[1] != str(tmp_path / "no-such-g++")


def test_a_batch_draws_each_row_as_alone():
    """The rows' starts are drawn on several threads: the same values as one by one, in order."""
    from rdbench.systems.grayscott import initial_state, initial_states

    settings = [smoke(), smoke("stripe"), smoke(**{"initial.square_size": 0}), smoke()]
    seeds = [5, 6, 7, 8]
    batch = initial_states(settings, seeds, torch.float32)
    with torch.inference_mode():  # as a phase-map chunk builds its batch
        assert torch.equal(initial_states(settings, seeds, torch.float32), batch)
    for row, (s, seed) in enumerate(zip(settings, seeds, strict=True)):
        u, v = initial_state(s, seed, torch.float32)
        assert torch.equal(batch[0, row], u) and torch.equal(batch[1, row], v)
