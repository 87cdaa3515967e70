"""The DDPM system's parts: data loaders, the split reverse step, M_diff, training, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdbench.balance import BalanceMeter
from rdbench.config import load_system
from rdbench.systems.ddpm.data import DATASETS, load_dataset
from rdbench.systems.ddpm.grid import LABEL_WIDTH_PX, image_grid, sampling_grid, step_label
from rdbench.systems.ddpm.model import UNet
from rdbench.systems.ddpm.sample import TERMS, measure, network_predictor, sample, snapshot_steps
from rdbench.systems.ddpm.schedule import NoiseSchedule
from rdbench.systems.ddpm.system import DDPM, _train_config, build_model, build_schedule
from rdbench.systems.ddpm.train import (
    CheckpointError,
    CheckpointOrigin,
    Trainer,
    batch_indices,
    checkpoint_origin,
    checkpoint_step,
    exclusive,
    load_checkpoint,
)
from rdbench.systems.records import digest

TABLE1_M_DIFF = {"mnist": 3.0274, "fashionmnist": 3.0277, "cifar10": 5.2508}


def settings(case="digits", profile="smoke", **overrides):
    return load_system("ddpm").resolve(case, profile, overrides)


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_idx_files_load_through_torchvision_padded_to_32(tmp_path, name, folder, fake_mnist):
    images = fake_mnist(tmp_path, folder)
    data = load_dataset(name, tmp_path)
    assert data.images.shape == (12, 1, 32, 32) and data.images.dtype == torch.uint8
    assert torch.equal(data.images[:, 0, 2:30, 2:30], torch.from_numpy(images))
    border = data.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.abs().sum()) == 0  # zero padding, as the authors did
    x = data.batch(torch.tensor([0, 5]), (-1.0, 1.0))
    assert x.dtype == torch.float32 and x.shape == (2, 1, 32, 32)
    assert float(x[0, 0, 0, 0]) == -1.0
    assert x[0, 0, 2:30, 2:30] == pytest.approx(torch.from_numpy(images[0]).float() / 127.5 - 1, abs=1e-6)
    record = data.record()  # the run input: where the files were read, a digest of every pixel
    assert record.name == name and record.source == str(tmp_path / folder / "raw") and record.shape == (12, 1, 32, 32)
    assert record.digest == digest(data.images) and record.dtype == "uint8" and record.context == "training"


def test_digits_are_sklearns_8x8_upsampled_and_labelled_as_such():
    data = load_dataset("digits")
    assert data.images.shape == (1797, 1, 32, 32)
    assert int(data.images.max()) == 255 and int(data.images.min()) == 0
    assert "NOT MNIST" in data.describe()["description"]
    from sklearn.datasets import load_digits

    small = torch.nn.functional.avg_pool2d(data.images.float() / 255, 4)[:, 0]
    original = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16
    assert torch.corrcoef(torch.stack([small.flatten(), original.flatten()]))[0, 1] > 0.97


def test_batches_are_a_pure_function_of_seed_and_step():
    a = batch_indices(100, 32, seed=3, step=7)
    assert torch.equal(a, batch_indices(100, 32, seed=3, step=7))
    epoch = torch.cat([batch_indices(100, 32, 3, s) for s in range(3)])
    assert len(set(epoch.tolist())) == 96  # no image twice within an epoch
    assert not torch.equal(a, batch_indices(100, 32, seed=4, step=7))


# ----------------------------------------------------------------------------- reverse step


def diffusers_scheduler(variance: str, float64: bool):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                        variance_type=variance, clip_sample=False)
    if float64:  # the same schedule without float32 rounding, to compare the formulas exactly
        ref.betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        ref.alphas = 1.0 - ref.betas
        ref.alphas_cumprod = torch.cumprod(ref.alphas, dim=0)
        ref.one = torch.tensor(1.0, dtype=torch.float64)
    return ref


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
@pytest.mark.parametrize("t", [999, 500, 1, 0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reverse_step_equals_diffusers(variance, t, dtype):
    """diffusers' DDPMScheduler.step, given the same x_t, eps and noise, lands on the same x_{t-1}.

    In float64 they agree to 1e-10; in float32 diffusers' float32 schedule (1 - abar_t
    loses digits near t = 0) leaves a relative difference of order 1e-4.
    """
    ref = diffusers_scheduler(variance, dtype == torch.float64)
    ours = NoiseSchedule(1000, 1e-4, 0.02, variance=variance, final_noise=False)
    gen = torch.Generator().manual_seed(11)
    x_t = torch.randn(3, 1, 32, 32, generator=gen, dtype=dtype)
    eps = torch.randn(3, 1, 32, 32, generator=gen, dtype=dtype)
    expected = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(5)).prev_sample
    z = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(5), dtype=dtype)
    step = ours.reverse_step(x_t, t, eps, z)
    tol = 1e-10 if dtype == torch.float64 else 5e-4
    torch.testing.assert_close(step.x_prev, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(x_t + step.reaction + step.diffusion, step.x_prev, rtol=0, atol=10 * tol)
    if t == 0:
        assert float(step.diffusion.abs().max()) == 0.0  # the noise-free last step
    else:
        sigma = ref.betas[t].sqrt() if variance == "fixed_large" else ref._get_variance(t).sqrt()
        torch.testing.assert_close(step.diffusion, sigma * z, rtol=tol, atol=tol)
    assert step.eps is eps


def test_final_noise_option_injects_noise_at_the_last_step():
    schedule = NoiseSchedule(1000, 1e-4, 0.02, final_noise=True)
    assert schedule.sigma(0) == pytest.approx(0.01)
    assert len(schedule.recorded_steps()) == 1000
    assert len(NoiseSchedule(1000, 1e-4, 0.02).recorded_steps()) == 999


def test_sampler_feeds_the_meter_each_noisy_step_with_exact_terms():
    """The recorded norms are those of mean - x_t, sigma z and eps at each step (recomputed here)."""
    schedule = NoiseSchedule(6, 1e-3, 0.2)
    eps_fn = lambda x, t: 0.5 * x + t[:, None, None, None].float() / 10  # noqa: E731
    meter = BalanceMeter(2, TERMS)
    gen = torch.Generator().manual_seed(1)
    out = sample(eps_fn, schedule, 2, (1, 4, 4), gen, torch.device("cpu"), meter)
    result = meter.result()
    assert result.steps.tolist() == [0, 1, 2, 3, 4]  # t = 5..1; t = 0 adds no noise, not recorded
    # replay by hand
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 4, 4, generator=gen)
    for n, t in enumerate(range(5, -1, -1)):
        eps = eps_fn(x, torch.full((2,), t))
        b, abar = schedule.betas[t].item(), schedule.alpha_bars[t].item()
        mean = (x - b / np.sqrt(1 - abar) * eps) / np.sqrt(1 - b)
        if t > 0:
            z = torch.randn(2, 1, 4, 4, generator=gen)
            np.testing.assert_allclose(result.norms["reaction"][:, n], (mean - x).flatten(1).norm(dim=1), rtol=1e-5)
            np.testing.assert_allclose(result.norms["diffusion"][:, n], (np.sqrt(b) * z).flatten(1).norm(dim=1), rtol=1e-5)
            np.testing.assert_allclose(result.norms["eps"][:, n], eps.flatten(1).norm(dim=1), rtol=1e-5)
            x = mean + np.sqrt(b) * z
        else:
            x = mean
    torch.testing.assert_close(out, x.float(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- M_diff


@pytest.mark.parametrize(("case", "channels"), [("mnist", 1), ("fashionmnist", 1), ("cifar10", 3)])
def test_measured_m_diff_matches_closed_form_and_table1_at_paper_settings(case, channels):
    """M_diff depends on the schedule and the image size only; the eps predictor does not enter it."""
    s = settings(case, "paper")
    schedule = build_schedule(s)
    shape = DATASETS[case].shape
    assert shape == (channels, 32, 32)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    result, _ = measure(zero, schedule, 8, 8, shape, seed=0, device=torch.device("cpu"))
    closed = schedule.closed_form_m_diff(channels * 32 * 32)
    assert result.n_steps == 999
    assert result.M_diff == pytest.approx(closed, rel=0.01)
    assert closed == pytest.approx(TABLE1_M_DIFF[case], rel=0.01)
    assert result.M_diff == pytest.approx(TABLE1_M_DIFF[case], rel=0.01)


# ----------------------------------------------------------------------------- model and training


def test_unet_shapes_and_time_dependence(one_thread):
    model = UNet(3, [8, 16, 16], [False, True, False], 1, 0.0, 4, 2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x, torch.tensor([0, 0]))
        b = model(x, torch.tensor([900, 900]))
    assert a.shape == x.shape
    assert not torch.allclose(a, b)


def test_a_few_training_steps_lower_the_loss(tmp_path, one_thread):
    s = settings(train_steps=20, lr=3e-3, batch_size=8, log_every=4)
    data = load_dataset("digits")
    schedule = build_schedule(s)
    trainer = Trainer(build_model(s, 0), schedule, data, _train_config(s), 0, torch.device("cpu"), tmp_path)

    def held_out_loss() -> float:
        gen = torch.Generator().manual_seed(99)
        x0 = data.batch(torch.arange(0, 1797, 28), s.pixel_range)
        t = torch.randint(0, schedule.timesteps, (len(x0),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(trainer.model.eval()(schedule.add_noise(x0, t, noise), t), noise))

    before = held_out_loss()
    logged = []
    trainer.train(log_loss=lambda loss, step: logged.append((step, loss)))
    after = held_out_loss()
    assert after < 0.6 * before, (before, after)
    assert [step for step, _ in logged] == [4, 8, 12, 16, 20]
    assert logged[-1][1] < logged[0][1]


class Killed(Exception):
    pass


def test_resume_from_checkpoint_reproduces_an_uninterrupted_run(tmp_path, one_thread):
    """Killed at step 7 (last checkpoint: step 5), resumed: bit-identical to training straight through."""
    s = settings(train_steps=12, checkpoint_every=5, log_every=1, batch_size=8, **{"model.dropout": 0.2})
    data = load_dataset("digits")

    def trainer(folder):
        return Trainer(build_model(s, 0), build_schedule(s), data, _train_config(s), 0, torch.device("cpu"), folder)

    straight = trainer(tmp_path / "a")
    straight.train(log_loss=lambda *_: None)

    def kill_at_7(loss, step):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        trainer(tmp_path / "b").train(log_loss=kill_at_7)
    resumed = trainer(tmp_path / "b")
    assert resumed.try_resume() and resumed.step == 5
    resumed.train(log_loss=lambda *_: None)
    assert resumed.step == 12
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for a, b in zip(straight.ema.model.state_dict().values(), resumed.ema.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_is_written_atomically_and_loads_weights_only(tmp_path, one_thread):
    s = settings(train_steps=4, checkpoint_every=2)
    trainer = Trainer(build_model(s, 0), build_schedule(s), load_dataset("digits"), _train_config(s), 0,
                      torch.device("cpu"), tmp_path)
    seen = []
    trainer.train(log_loss=lambda *_: None, on_checkpoint=lambda path, step: seen.append((path.name, step)))
    assert seen == [("latest.pt", 2), ("latest.pt", 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "latest.pt"]  # no temporary file left
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert state["step"] == 4 and {"model", "ema", "optimizer", "generator", "torch_rng"} <= set(state)
    assert checkpoint_step(tmp_path / "latest.pt") == 4


def test_a_checkpoint_is_never_replaced_by_one_from_fewer_steps(tmp_path, one_thread):
    s = settings(train_steps=4, checkpoint_every=2)

    def trainer() -> Trainer:
        return Trainer(build_model(s, 0), build_schedule(s), load_dataset("digits"), _train_config(s), 0,
                       torch.device("cpu"), tmp_path)

    trainer().train(log_loss=lambda *_: None)
    with pytest.raises(CheckpointError, match=r"is at step 4; refusing to replace it with step 2"):
        trainer().train(log_loss=lambda *_: None)  # from scratch, into the same folder
    assert checkpoint_step(tmp_path / "latest.pt") == 4
    with pytest.raises(CheckpointError, match=r"--no-resume: checkpoint .* at step 4 exists"):
        trainer().refuse_if_ahead()
    again = trainer()
    assert again.try_resume() and again.step == 4


def test_a_checkpoint_names_the_run_that_wrote_it_and_discard_deletes_it(tmp_path, one_thread):
    s = settings(train_steps=2, checkpoint_every=2)

    def trainer(run_id=None) -> Trainer:
        return Trainer(build_model(s, 0), build_schedule(s), load_dataset("digits"), _train_config(s), 0,
                       torch.device("cpu"), tmp_path, run_id=run_id)

    assert trainer().try_resume() is None  # nothing to continue from
    trainer("run-a").train(log_loss=lambda *_: None)
    path = tmp_path / "latest.pt"
    assert checkpoint_origin(path) == CheckpointOrigin(path, 2, "run-a")
    assert trainer("run-b").try_resume() == CheckpointOrigin(path, 2, "run-a")
    assert "at step 2, written by run run-a" in checkpoint_origin(path).describe()
    (tmp_path / "latest.json").write_text('{"step": 2}')  # written before rdbench recorded the run
    assert checkpoint_origin(path).run_id is None and "an unknown run" in checkpoint_origin(path).describe()
    fresh = trainer("run-c")
    assert fresh.discard() and not path.exists() and not (tmp_path / "latest.json").exists()
    assert not fresh.discard() and fresh.try_resume() is None


def test_an_unreadable_checkpoint_is_one_line_naming_it(tmp_path):
    path = tmp_path / "latest.pt"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, torch.device("cpu"))
    assert str(path) in str(err.value) and "truncated or corrupt" in str(err.value) and "\n" not in str(err.value)


def test_one_process_at_a_time_trains_into_a_checkpoint_folder(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"fh = open({str(tmp_path / '.lock')!r}, 'a+'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match="is in use by another process"), exclusive(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path):  # free again
        pass


def test_untrained_network_predictor_runs_through_the_probe(one_thread):
    s = settings()
    model = build_model(s, 0)
    result, images = measure(network_predictor(model), build_schedule(s), 3, 2, (1, 32, 32), 0, torch.device("cpu"))
    assert result.n_samples == 3 and result.n_steps == 49 and images.shape == (3, 1, 32, 32)
    assert set(result.norms) == {"reaction", "diffusion", "eps"}
    assert np.isfinite(result.R) and np.isfinite(result.R_final)


def test_image_grid_layout():
    grid = image_grid(torch.zeros(10, 3, 32, 32), (0.0, 1.0), columns=4)
    assert grid.shape == (3 * 34 - 2, 4 * 34 - 2, 3)
    assert image_grid(torch.ones(2, 1, 32, 32), (-1.0, 1.0)).shape == (32, 66)


def test_sampling_keeps_snapshots_and_the_grid_labels_every_step_row(one_thread):
    s = settings()
    snapshots = {}
    _, images = measure(network_predictor(build_model(s, 0)), build_schedule(s), 10, 10, (1, 32, 32), 0,
                        torch.device("cpu"), snapshots=snapshots)
    assert snapshot_steps(50) == [0, 12, 25, 38, 50] and sorted(snapshots) == [0, 12, 25, 38, 50]
    assert torch.equal(snapshots[50], images[:8])  # the bottom row: the samples themselves, first 8
    assert not torch.equal(snapshots[0], snapshots[50])
    grid = sampling_grid(snapshots, 50, s.pixel_range)
    row = 32 * 8  # nearest-neighbour upscaling to >= 256 px a row
    assert grid.dtype == np.uint8 and grid.shape == (5 * row + 4 * 16, LABEL_WIDTH_PX + 8 * row + 7 * 16, 3)
    labels = grid[:, :LABEL_WIDTH_PX].min(axis=(1, 2))
    for k in range(5):  # every row's label strip has text in it
        assert labels[k * (row + 16) : k * (row + 16) + row].min() < 128
    assert step_label(12, 50) == "step 12/50\nt=38" and step_label(50, 50).endswith("x_0 (sample)")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pixel_range": [1.0, 0.0]}, "pixel_range [1.0, 0.0]: the low end must be below the high end"),
        ({"model.attention": [True]}, "model.attention has 1 entries, model.channels 2"),
        ({"model.groups": 3}, "not divisible by model.groups=3"),
        ({"schedule.beta_end": 1e-5}, "need 0 < beta_start < beta_end < 1"),
    ],
)
def test_check_rejects_settings_that_cannot_run(overrides, message):
    from rdbench.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DDPM().check(settings(**{}) if not overrides else load_system("ddpm").resolve("digits", "smoke", overrides))
