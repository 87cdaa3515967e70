"""Noise schedules of the DDPM system and the oracle: linear (unchanged), scaled_linear, cosine, any T."""

from __future__ import annotations

import pytest
import torch

from rdbench.config import ConfigError, load_system
from rdbench.systems.ddpm.sample import measure
from rdbench.systems.ddpm.schedule import NoiseSchedule, make_betas
from rdbench.systems.ddpm.system import DDPM, build_schedule

CONF = load_system("ddpm")


def test_linear_is_todays_schedule_exactly():
    schedule = build_schedule(CONF.resolve("mnist"))
    assert schedule.kind == "linear" and not schedule.via_x0
    assert torch.equal(schedule.betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    assert torch.equal(make_betas("linear", 50), torch.linspace(1e-4, 0.02, 50, dtype=torch.float64))


@pytest.mark.parametrize(("kind", "theirs", "end"), [("scaled_linear", "scaled_linear", 0.012),
                                                      ("cosine", "squaredcos_cap_v2", 0.02)])
@pytest.mark.parametrize("timesteps", [50, 1000, 4000])
def test_kinds_match_diffusers(kind, theirs, end, timesteps):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=timesteps, beta_start=8.5e-4, beta_end=end, beta_schedule=theirs)
    ours = make_betas(kind, timesteps, 8.5e-4, end)
    torch.testing.assert_close(ours.float(), ref.betas, rtol=1e-5, atol=1e-7)  # diffusers holds float32


def test_reference_timesteps_scale_the_linear_endpoints():
    for kind in ("linear", "scaled_linear"):
        betas = make_betas(kind, 50, 1e-4, 0.02, reference_timesteps=1000)
        torch.testing.assert_close(betas, 20 * make_betas(kind, 50, 1e-4, 0.02), rtol=1e-12, atol=0)
    ends = [NoiseSchedule(t, 1e-4, 0.02, reference_timesteps=1000).alpha_bars[-1].item() for t in (50, 1000, 4000)]
    assert all(5e-6 < e < 5e-5 for e in ends), ends  # every T ends in (almost) pure noise
    assert NoiseSchedule(50, 1e-4, 0.02).alpha_bars[-1].item() == pytest.approx(0.6, abs=0.01)  # unscaled: no noise


@pytest.mark.parametrize("kind", ["scaled_linear", "cosine"])
def test_the_system_samples_with_other_kinds(kind):
    s = CONF.resolve("digits", "smoke", {"schedule.kind": kind, "sampler.variance": "fixed_small"})
    DDPM().check(s)
    schedule = build_schedule(s)
    assert schedule.kind == kind and schedule.timesteps == 50
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    result, _ = measure(zero, schedule, 4, 4, (1, 32, 32), seed=0, device=torch.device("cpu"))
    assert result.M_diff == pytest.approx(schedule.closed_form_m_diff(1024), rel=0.02)


def test_check_refuses_a_schedule_that_cannot_exist():
    s = CONF.resolve("digits", "smoke", {"schedule.timesteps": 10, "schedule.reference_timesteps": 1000})
    with pytest.raises(ConfigError, match=r"schedule \(linear, T=10\): betas must lie in \(0, 1\)"):
        DDPM().check(s)
