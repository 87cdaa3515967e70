"""Public diffusers pipelines measured without training: rdbench's sampler against diffusers' own,
the drift/noise split for each prediction type, and every bad model refused in one line."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
import torch
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.config import ConfigError, load_system
from rdbench.systems.ddpm.pretrained import locate, unet_predictor
from rdbench.systems.ddpm.sample import measure
from rdbench.systems.ddpm.system import DDPM

diffusers = pytest.importorskip("diffusers")

PREDICTIONS = ("epsilon", "sample", "v_prediction")
VARIANCES = ("fixed_small", "fixed_large")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def pairwise() -> list[tuple]:
    """12 of the 36 (prediction, variance, clip, beta schedule) cases holding every pair of values."""
    rows = itertools.product(PREDICTIONS, itertools.product(VARIANCES, (False, True)))
    return [(p, v, c, BETA_SCHEDULES[(i + i // 4) % 3]) for i, (p, (v, c)) in enumerate(rows)]


# every case: the pairwise ones in the fast suite, the other 24 in the slow one
SAMPLING_CASES = [
    pytest.param(*case, marks=() if case in pairwise() else pytest.mark.slow)
    for case in itertools.product(PREDICTIONS, VARIANCES, (False, True), BETA_SCHEDULES)
]


def tiny_unet(channels: int = 1, size: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )


def save_pipeline(folder, channels=1, size=8, **scheduler):
    """A randomly initialised tiny DDPMPipeline written with save_pretrained (what a user downloads)."""
    config = {"num_train_timesteps": 20, "beta_start": 1e-4, "beta_end": 0.02, **scheduler}
    pipe = diffusers.DDPMPipeline(unet=tiny_unet(channels, size), scheduler=diffusers.DDPMScheduler(**config))
    pipe.save_pretrained(folder)
    return folder


def float64_schedule(scheduler) -> None:
    """Hold diffusers' schedule in float64 (the same values): its float32 ``1 - abar_t / abar_{t-1}``
    loses digits near t = 0, which is the only thing that separates the two loops."""
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)


# ----------------------------------------------------------------------------- sampling equivalence


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("prediction", "variance", "clip", "beta_schedule"), SAMPLING_CASES)
def test_probe_sampling_reproduces_diffusers(tmp_path, prediction, variance, clip, beta_schedule):
    """The same x_T and per-step z (one seeded generator, drawn in the same order) give the same
    images through rdbench's probe as through DDPMPipeline and a hand-written scheduler.step loop."""
    end = 0.2 if beta_schedule == "scaled_linear" else 0.02  # reaches noise in 20 steps
    folder = save_pipeline(tmp_path / "pipe", prediction_type=prediction, variance_type=variance,
                           clip_sample=clip, beta_schedule=beta_schedule, beta_end=end)
    model = locate(str(folder))
    schedule = model.schedule()
    assert (schedule.prediction, schedule.variance) == (prediction, variance)
    assert schedule.clip_range == (1.0 if clip else None) and schedule.timesteps == 20
    result, ours = measure(unet_predictor(model.load_unet()), schedule, 3, 3, model.sample_shape, seed=7,
                           device=torch.device("cpu"))
    assert result.n_steps == 19 and result.n_samples == 3  # t = 0 adds no noise and is not measured

    pipe = diffusers.DDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    stock = pipe(batch_size=3, generator=torch.Generator().manual_seed(7), num_inference_steps=20,
                 output_type="pt").images
    # diffusers' float32 schedule: the same images but for its own rounding near t = 0
    torch.testing.assert_close((ours / 2 + 0.5).clamp(0, 1), stock, rtol=0, atol=1e-4)

    float64_schedule(pipe.scheduler)
    images = pipe(batch_size=3, generator=torch.Generator().manual_seed(7), num_inference_steps=20,
                  output_type="pt").images
    torch.testing.assert_close((ours / 2 + 0.5).clamp(0, 1), images, rtol=0, atol=1e-5)

    gen = torch.Generator().manual_seed(7)  # diffusers' own loop, raw (unclamped) samples
    x = torch.randn((3, *model.sample_shape), generator=gen)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            x = pipe.scheduler.step(pipe.unet(x, t).sample, t, x, generator=gen).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("t", [19, 10, 1])
def test_drift_noise_split_of_each_prediction_type(tmp_path, prediction, t):
    """reaction = posterior mean - x_t and diffusion = sigma_t z add up to diffusers' x_{t-1};
    the eps term is the network's output (epsilon) or the noise its prediction implies."""
    folder = save_pipeline(tmp_path / "pipe", prediction_type=prediction, variance_type="fixed_small",
                           clip_sample=False)
    schedule = locate(str(folder)).schedule()
    ref = diffusers.DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    float64_schedule(ref)
    gen = torch.Generator().manual_seed(3)
    x_t, output = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    expected = ref.step(output, t, x_t, generator=torch.Generator().manual_seed(5)).prev_sample
    step = schedule.reverse_step(x_t, t, output, z)
    torch.testing.assert_close(step.x_prev, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x_t + step.reaction + step.diffusion, step.x_prev, rtol=0, atol=1e-6)
    torch.testing.assert_close(step.diffusion, ref._get_variance(t).sqrt().float() * z, rtol=1e-6, atol=1e-7)
    abar = float(ref.alphas_cumprod[t])
    implied = {
        "epsilon": output,
        "sample": (x_t - abar ** 0.5 * output) / (1 - abar) ** 0.5,
        "v_prediction": (1 - abar) ** 0.5 * x_t + abar ** 0.5 * output,
    }[prediction]
    torch.testing.assert_close(step.eps, implied, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- bad models


def test_a_folder_of_another_pipeline_class_is_refused(tmp_path):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=20)
    diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(tmp_path / "ddim")
    with pytest.raises(ConfigError, match=r"model_index.json names DDIMPipeline; rdbench measures a DDPMPipeline"):
        locate(str(tmp_path / "ddim"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such folder, and not a Hugging Face Hub id"),
        (lambda p: p.mkdir(), "no unet/config.json in"),
        (lambda p: p.write_text("x"), "is a file; give the folder"),
    ],
)
def test_missing_model_files_are_one_line(tmp_path, make, message):
    target = tmp_path / "model"
    make(target)
    with pytest.raises(ConfigError, match=message) as info:
        locate(str(target))
    assert "\n" not in str(info.value)


def test_missing_weights_and_unsupported_schedulers_are_refused(tmp_path):
    folder = save_pipeline(tmp_path / "pipe")
    for weights in (folder / "unet").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    with pytest.raises(ConfigError, match="no weights in .*unet"):
        locate(str(folder))
    learned = save_pipeline(tmp_path / "learned", variance_type="learned_range")
    with pytest.raises(ConfigError, match="variance_type='learned_range' is not supported; allowed: fixed_large, fixed_small"):
        locate(str(learned))
    thresholding = save_pipeline(tmp_path / "thr", thresholding=True)
    with pytest.raises(ConfigError, match="thresholding=true is not supported"):
        locate(str(thresholding))


def test_mlflow_model_uris_are_not_supported_yet():
    with pytest.raises(ConfigError, match="MLflow model URIs are not supported yet"):
        locate("runs:/0123/model")


def test_a_hub_id_without_network_is_one_line(offline):
    with pytest.raises(ConfigError, match="fetching its configs from the Hugging Face Hub failed") as info:
        locate("google/ddpm-cifar10-32")
    assert "\n" not in str(info.value)


def test_without_diffusers_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    folder = save_pipeline(tmp_path / "pipe")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    with pytest.raises(ConfigError, match=r"pretrained models need the optional package diffusers: "
                                          r"pip install rdbench\[diffusers\]"):
        locate(str(folder))


def test_check_refuses_a_dataset_of_another_shape_for_the_oracle(tmp_path):
    folder = save_pipeline(tmp_path / "pipe", channels=3, size=8)
    conf = load_system("ddpm")
    s = conf.resolve("digits", "smoke", {"pretrained": str(folder)})
    with pytest.raises(ConfigError, match="generates 3x8x8 images but dataset 'digits' has 1x32x32"):
        DDPM().check(s)
    DDPM().check(conf.resolve("digits", "smoke", {"pretrained": str(folder), "oracle.train_images": 0}))


# ----------------------------------------------------------------------------- end to end


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.usefixtures("one_thread")
def test_run_ddpm_measures_a_saved_pipeline_end_to_end(experiment, mlflow_client, tmp_path, runs_of):
    folder = save_pipeline(tmp_path / "pipe", channels=1, size=32, variance_type="fixed_small", clip_sample=True)
    result = invoke("run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--model", str(folder),
                    "--device", "cpu", "--experiment", experiment)
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    p, m = run.data.params, run.data.metrics
    assert p["pretrained"] == str(folder)  # --model is the `pretrained` setting
    for key in ("M_react", "M_diff", "R", "R_final", "M_eps", "M_diff_closed_form", "n_parameters",
                "control.oracle.R", "control.oracle_noise.R", "timesteps"):
        assert key in m, key
    assert "control.untrained.R" not in m and "final_loss" not in m  # nothing trained
    assert m["timesteps"] == 20 and m["n_steps"] == 19  # the model's schedule, not the profile's 50
    assert m["M_diff"] == pytest.approx(m["M_diff_closed_form"], rel=0.05)
    assert m["control.oracle.M_diff"] == m["M_diff"]  # the same noise
    schedule = json.load(open(mlflow_client.download_artifacts(run.info.run_id, "pretrained/schedule.json")))
    assert schedule["variance"] == "fixed_small" and schedule["clip_range"] == 1.0 and schedule["timesteps"] == 20
    described = json.load(open(mlflow_client.download_artifacts(run.info.run_id, "pretrained/model.json")))
    assert described["sample_shape"] == [1, 32, 32] and described["scheduler_config"]["num_train_timesteps"] == 20
    assert {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "samples")} == {"samples/pretrained.png"}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 16)])
def test_a_pipeline_runs_with_no_dataset_and_says_what_its_oracle_control_uses(
        channels, size, experiment, mlflow_client, tmp_path, runs_of):
    """No --dataset: a dataset of the pipeline's shape feeds the oracle control when its files are here;
    none is here (an empty data folder), so that control is skipped, and the command says so."""
    folder = save_pipeline(tmp_path / "pipe", channels=channels, size=size)
    data = tmp_path / "data"
    result = invoke("run", "ddpm", "--profile", "smoke", "--model", str(folder), "--device", "cpu",
                    "--data-dir", str(data), "--experiment", experiment)
    assert result.exit_code == 0, result.output
    assert (f"--model {folder} generates {channels}x{size}x{size} images and no dataset of that shape is here "
            f"(digits 1x32x32): the oracle control on training images is skipped") in result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED" and run.data.params["oracle.train_images"] == "0"
    assert "control.oracle_noise.R" in run.data.metrics and "control.oracle.R" not in run.data.metrics


def test_the_oracle_dataset_of_a_pipeline_is_a_present_dataset_of_its_shape(tmp_path):
    from rdbench.systems.ddpm.data import DATASETS
    from rdbench.systems.ddpm.system import oracle_dataset

    assert oracle_dataset((3, 32, 32), tmp_path) is None  # CIFAR10's files are not here
    assert oracle_dataset((1, 32, 32), tmp_path) == "digits"  # bundled with scikit-learn, the last resort
    assert oracle_dataset((1, 16, 16), tmp_path) is None
    spec = DATASETS["cifar10"]
    (tmp_path / spec.folder).mkdir(parents=True)
    for name in spec.files:
        (tmp_path / spec.folder / name).write_bytes(b"")
    assert oracle_dataset((3, 32, 32), tmp_path) == "cifar10"
    case, overrides, note = DDPM().case_for_model(str(save_pipeline(tmp_path / "pipe", channels=3, size=32)), tmp_path)
    assert (case, overrides) == ("cifar10", {}) and note.endswith("the oracle control uses dataset cifar10")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler()).save_pretrained(p),
         "model_index.json names DDIMPipeline"),
        (lambda p: p.mkdir(), "no unet/config.json in"),
    ],
)
def test_a_bad_model_folder_exits_2_in_one_line_and_leaves_no_run(tmp_path, experiment, mlflow_client, make, message, runs_of):
    make(tmp_path / "model")
    result = invoke("run", "ddpm", "--profile", "smoke", "--set", f"pretrained={tmp_path / 'model'}",
                    "--experiment", experiment)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


def test_model_is_refused_for_a_system_without_pretrained_models(experiment, mlflow_client, runs_of):
    result = invoke("run", "rd", "--model", "some/model", "--experiment", experiment)
    assert result.exit_code == 2 and "--model: system 'rd' measures only models it trains itself" in result.output
    assert runs_of(mlflow_client, experiment) == []
