"""The exact-denoiser oracle against brute force and its limiting cases."""

import pytest
import torch

from rdbench.systems.ddpm.oracle import ExactDenoiser, uniform_noise_images


def alpha_bars(timesteps=1000, start=1e-4, end=0.02):
    return torch.cumprod(1 - torch.linspace(start, end, timesteps, dtype=torch.float64), 0)


def test_posterior_mean_equals_brute_force_float64():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(7, 1, 4, 4, generator=gen, dtype=torch.float64)
    abar = alpha_bars()
    oracle = ExactDenoiser(images, abar, chunk_size=3)  # several chunks exercise the streaming log-sum-exp
    x_t = torch.randn(5, 1, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 700, 999])
    ours = oracle.posterior_mean(x_t, t)
    for row in range(5):
        a = abar[t[row]]
        d2 = ((x_t[row] - a.sqrt() * images) ** 2).flatten(1).sum(1)
        w = torch.softmax(-d2 / (2 * (1 - a)), dim=0)
        expected = (w.view(-1, 1, 1, 1) * images).sum(0)
        torch.testing.assert_close(ours[row], expected, rtol=1e-10, atol=1e-12)


def test_nearly_noise_free_returns_the_nearest_training_image():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(20, 1, 8, 8, generator=gen, dtype=torch.float64)
    oracle = ExactDenoiser(images, alpha_bars())
    target = images[13:14] + 0.01 * torch.randn(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    x_t = alpha_bars()[0].sqrt() * target  # t = 0: abar = 1 - 1e-4
    mean = oracle.posterior_mean(x_t, torch.tensor([0]))
    torch.testing.assert_close(mean[0], images[13], rtol=0, atol=1e-9)


def test_one_image_data_set_recovers_the_true_noise():
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    abar = alpha_bars()
    oracle = ExactDenoiser(image, abar)
    noise = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    t = torch.tensor([5, 250, 600, 999])
    a = abar[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * image + (1 - a).sqrt() * noise
    torch.testing.assert_close(oracle(x_t, t), noise, rtol=1e-8, atol=1e-8)


def test_float32_inputs_give_float32_eps_and_stable_softmax_far_from_data():
    images = torch.zeros(3, 1, 4, 4)
    images[1] += 1.0
    oracle = ExactDenoiser(images, alpha_bars())
    x_t = torch.full((2, 1, 4, 4), 1e3)  # logits of order -1e10: a naive softmax underflows to 0/0
    eps = oracle(x_t, torch.tensor([0, 0]))
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()


def test_uniform_noise_images_are_seeded_and_in_range():
    a = uniform_noise_images(5, (1, 4, 4), (-1.0, 1.0), seed=3)
    b = uniform_noise_images(5, (1, 4, 4), (-1.0, 1.0), seed=3)
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1 and a.shape == (5, 1, 4, 4)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_oracle_controls_reach_the_run_and_the_table(experiment, mlflow_client, runs_of):
    from click.testing import CliRunner

    from rdbench.cli import main
    from rdbench.report.published import load_published
    from rdbench.report.table import build_table, cells_frame

    result = CliRunner().invoke(main, ["run", "ddpm", "--dataset", "digits", "--profile", "smoke",
                                       "--train-steps", "4", "--probe-every", "0", "--device", "cpu",
                                       "--experiment", experiment])
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    m = run.data.metrics
    for control in ("untrained", "oracle", "oracle_noise"):
        for q in ("M_react", "M_diff", "R", "R_final"):
            assert f"control.{control}.{q}" in m
        assert len(mlflow_client.get_metric_history(run.info.run_id, f"control.{control}.R_t")) > 0
    assert m["oracle_images"] == 64 and m["oracle_noise_images"] == 64
    assert run.data.params["oracle.train_images"] == "64"
    # same sampling noise for network and oracle: the diffusion series are identical
    assert m["control.oracle.M_diff"] == m["M_diff"]
    table = build_table(cells_frame([run]), load_published())
    (row,) = table.to_dict("records")
    assert row["control.oracle.R"] == m["control.oracle.R"]
    assert row["control.oracle_noise.R"] == m["control.oracle_noise.R"]
