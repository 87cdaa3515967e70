"""The user's own images for the DDPM system (imagefolder:DIR, npz:FILE): loading, channels,
sizes, every bad input refused in one line before a run exists, and a folder run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rdbench.cli import main
from rdbench.config import ConfigError, load_system
from rdbench.systems.ddpm.system import DDPM, build_model, image_shape, load_images
from rdbench.systems.ddpm.user_images import load_image_folder, load_npz, survey_image_folder

CONF = load_system("ddpm")


def write_pngs(folder, arrays, mode=None, subfolder="all"):
    """One PNG per array under folder/<subfolder>/ (the layout ImageFolder reads)."""
    target = folder / subfolder
    target.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        Image.fromarray(array, mode).save(target / f"{i:03d}.png")
    return folder


def grey_images(n=6, size=(16, 16), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *size), dtype=np.uint8)


# ----------------------------------------------------------------------------- image folders


def test_grey_pngs_load_exactly_as_one_channel(tmp_path):
    arrays = grey_images()
    folder = write_pngs(tmp_path / "digits_png", arrays[:4])
    write_pngs(folder, arrays[4:], subfolder="other")  # a second class: classes are ignored
    data = load_image_folder(folder, None)
    assert data.images.shape == (6, 1, 16, 16) and data.images.dtype == torch.uint8
    assert torch.equal(data.images[:, 0], torch.from_numpy(arrays))  # ImageFolder's order: class, then file
    assert data.spec.shape == (1, 16, 16) and "6 images from the folder" in data.describe()["description"]
    x = data.batch(torch.tensor([0]), (-1.0, 1.0))
    assert x[0, 0] == pytest.approx(torch.from_numpy(arrays[0]).float() / 127.5 - 1, abs=1e-6)


def test_colour_and_mixed_folders_become_rgb(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    folder = write_pngs(tmp_path / "mixed", rgb)
    write_pngs(folder, grey_images(1, (8, 8)), subfolder="grey")
    data = load_image_folder(folder, None)
    assert data.images.shape == (3, 3, 8, 8)
    assert torch.equal(data.images[0], torch.from_numpy(rgb[0]).permute(2, 0, 1))
    grey = data.images[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # grey copied to R, G and B


def test_image_size_resizes_mixed_sizes(tmp_path):
    folder = write_pngs(tmp_path / "sizes", grey_images(2, (28, 28)))
    write_pngs(folder, grey_images(1, (40, 20)), subfolder="b")
    with pytest.raises(ConfigError, match=r"images of different sizes, e.g. all/000.png is 28x28 and b/000.png "
                                          r"is 20x40 \(width x height\); set image_size"):
        survey_image_folder(folder, None)
    data = load_image_folder(folder, 32)
    assert data.images.shape == (3, 1, 32, 32)
    flat = load_image_folder(write_pngs(tmp_path / "flat", [np.full((28, 28), 200, np.uint8)]), 32)
    assert int(flat.images.min()) == 200 == int(flat.images.max())  # resizing keeps a flat image flat


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "no such folder"),
        (lambda d: d.mkdir(), "no class sub-folders; torchvision's ImageFolder reads"),
        (lambda d: (d.mkdir(), Image.fromarray(grey_images(1)[0]).save(d / "a.png")),
         "found 1 image files directly in it, move them into a sub-folder"),
        (lambda d: (d.mkdir(), (d / "empty").mkdir(), (d / "empty" / "notes.txt").write_text("x")),
         "no images in its sub-folders (empty); allowed extensions: .jpg"),
        (lambda d: ((d / "c").mkdir(parents=True), (d / "c" / "broken.png").write_bytes(b"not a png")),
         "cannot read c/broken.png as an image"),
    ],
)
def test_bad_folders_are_one_line(tmp_path, make, message):
    folder = tmp_path / "images"
    make(folder)
    with pytest.raises(ConfigError) as info:
        survey_image_folder(folder, None)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_check_requires_a_size_the_unet_can_halve_and_enough_images(tmp_path):
    folder = write_pngs(tmp_path / "mnistlike", grey_images(2, (28, 28)))
    case = f"imagefolder:{folder}"
    paper = CONF.resolve(case, "paper", {"batch_size": 2})
    with pytest.raises(ConfigError, match="4 levels halve the images 3 times, so their height and width must be "
                                          "divisible by 8; the images are 28x28: set image_size"):
        DDPM().check(paper)
    DDPM().check(CONF.resolve(case, "paper", {"image_size": 32, "batch_size": 2}))
    smoke = CONF.resolve(case, "smoke", {"batch_size": 2})  # 2 levels: 28 halves once
    DDPM().check(smoke)
    assert image_shape(smoke) == (1, 28, 28)
    model = build_model(smoke, 0, image_channels=1)
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1])).shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match=f"batch_size=16 exceeds the 2 images of imagefolder:{folder}"):
        DDPM().check(CONF.resolve(case, "smoke"))


def test_data_settings_must_fit_the_dataset():
    with pytest.raises(ConfigError, match="image_size applies to the datasets imagefolder and npz, not to 'digits'"):
        DDPM().check(CONF.resolve("digits", "smoke", {"image_size": 16}))
    with pytest.raises(ConfigError, match="dataset 'imagefolder' needs data_path"):
        DDPM().check(CONF.resolve("digits", "smoke", {"dataset": "imagefolder"}))


def test_parametric_cases_keep_a_readable_label(tmp_path):
    case = f"imagefolder:{tmp_path}/digits_png"
    s = CONF.resolve(case, "smoke")
    assert (s.dataset, s.data_path) == ("imagefolder", f"{tmp_path}/digits_png")
    assert CONF.case_label(case) == "imagefolder:digits_png"
    assert CONF.case_label("mnist") == "mnist"


# ----------------------------------------------------------------------------- npz files


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_npz_layouts_load_as_nchw(tmp_path, layout):
    base = np.random.default_rng(2).integers(0, 256, size=(5, 3, 8, 12), dtype=np.uint8)
    array = {"NHW": base[:, 0], "NHWC": base.transpose(0, 2, 3, 1), "NCHW": base}[layout]
    np.savez(tmp_path / "x.npz", images=array, labels=np.arange(5))
    data = load_npz(tmp_path / "x.npz", None, None)
    expected = base[:, :1] if layout == "NHW" else base
    assert torch.equal(data.images, torch.from_numpy(expected))


def test_npz_floats_keep_their_precision_and_are_range_checked(tmp_path):
    floats = np.random.default_rng(3).random((4, 1, 8, 8)).astype(np.float32)
    np.savez_compressed(tmp_path / "f.npz", floats)
    data = load_npz(tmp_path / "f.npz", None, None)  # the only array: arr_0
    assert data.images.dtype == torch.float32
    torch.testing.assert_close(data.batch(torch.arange(4), (0.0, 1.0)), torch.from_numpy(floats))
    np.savez(tmp_path / "bad.npz", images=floats * 2)
    with pytest.raises(ConfigError, match=r"float images must lie in \[0, 1\], found 0.0"):
        load_npz(tmp_path / "bad.npz", None, None)
    resized = load_npz(tmp_path / "f.npz", None, 16)
    assert resized.images.shape == (4, 1, 16, 16) and resized.images.dtype == torch.float32


@pytest.mark.parametrize(
    ("arrays", "key", "message"),
    [
        ({"a": np.zeros((2, 8, 8), np.uint8), "b": np.zeros(2)}, None, "holds 2 arrays (a, b); set data_key"),
        ({"images": np.zeros((2, 8, 8), np.uint8)}, "pixels", "no array 'pixels'; it holds: images"),
        ({"images": np.zeros((2, 4, 8, 8), np.uint8)}, None, "no axis of 1 or 3 channels"),
        ({"images": np.zeros((2, 8), np.uint8)}, None, "has 2 axes; allowed layouts"),
        ({"images": np.zeros((2, 8, 8), np.int32)}, None, "dtype int32; allowed: uint8 (0..255) or float in [0, 1]"),
        ({"images": np.full((2, 8, 8), np.nan)}, None, "holds NaN or infinite values"),
    ],
)
def test_bad_npz_files_are_one_line(tmp_path, arrays, key, message):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(ConfigError) as info:
        load_npz(tmp_path / "x.npz", key, None)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_npz_case_resolves_and_checks(tmp_path):
    np.savez(tmp_path / "set.npz", images=np.zeros((3, 32, 32, 3), np.uint8))
    s = CONF.resolve(f"npz:{tmp_path / 'set.npz'}", "smoke", {"batch_size": 3})
    DDPM().check(s)
    assert image_shape(s) == (3, 32, 32) and load_images(s).images.shape == (3, 3, 32, 32)


# ----------------------------------------------------------------------------- end to end


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.usefixtures("one_thread")
def test_run_ddpm_on_an_image_folder_end_to_end(tmp_path, experiment, mlflow_client, runs_of):
    from sklearn.datasets import load_digits

    digits = (load_digits().images[:40] * 255 / 16).astype(np.uint8)  # 8x8 grey digits as PNGs
    folder = write_pngs(tmp_path / "digits_png", list(digits))
    result = invoke("run", "ddpm", "--dataset", f"imagefolder:{folder}", "--profile", "smoke", "--device", "cpu",
                    "--train-steps", "6", "--probe-every", "0", "--experiment", experiment)
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    p, m = run.data.params, run.data.metrics
    assert p["dataset"] == "imagefolder" and p["data_path"] == str(folder) and p["image_size"] == "null"
    assert {"R", "M_react", "M_diff", "control.untrained.R", "control.oracle.R", "final_loss"} <= set(m)
    assert m["oracle_images"] == 40 and m["n_steps"] == 49
    assert m["M_diff"] == pytest.approx(m["M_diff_closed_form"], rel=0.05)
    assert m["M_diff_closed_form"] < 1.0  # 1x8x8 images: sqrt(64) mean sigma, an eighth of 32x32's
    with open(mlflow_client.download_artifacts(run.info.run_id, "dataset.json")) as fh:
        assert json.load(fh)["shape"] == [1, 8, 8]
    (data,) = mlflow_client.get_run(run.info.run_id).inputs.dataset_inputs  # the folder, as a local source
    assert data.dataset.source_type == "local" and json.loads(data.dataset.source)["uri"] == str(folder.resolve())
    assert json.loads(data.dataset.profile)["shape"] == [40, 1, 8, 8]


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda d: d.mkdir(), [], "no class sub-folders"),
        (lambda d: (write_pngs(d, grey_images(1, (8, 8))), write_pngs(d, grey_images(1, (16, 16)), subfolder="b")),
         [], "images of different sizes, e.g. all/000.png is 8x8 and b/000.png is 16x16"),
    ],
)
def test_a_bad_image_folder_exits_2_in_one_line_and_leaves_no_run(tmp_path, experiment, mlflow_client, make, extra, message, runs_of):
    make(tmp_path / "images")
    result = invoke("run", "ddpm", "--dataset", f"imagefolder:{tmp_path / 'images'}", "--profile", "smoke",
                    *extra, "--experiment", experiment)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


def test_a_bad_npz_file_exits_2_in_one_line_and_leaves_no_run(tmp_path, experiment, mlflow_client, runs_of):
    np.savez(tmp_path / "x.npz", images=np.full((2, 8, 8), 2.0))
    result = invoke("run", "ddpm", "--dataset", f"npz:{tmp_path / 'x.npz'}", "--profile", "smoke",
                    "--experiment", experiment)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "float images must lie in [0, 1], found 2..2" in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []
