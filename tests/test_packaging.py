"""A wheel of rdbench carries its configs: installed outside the checkout, it runs from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_the_smoke_profile_from_a_temp_folder(tmp_path, runs_of):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(REPO / "rdbench", source / "rdbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("rdbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rdbench/conf/smoke.yaml" in names and "rdbench/conf/systems/rd.yaml" in names

    # A fresh venv with the wheel; its dependencies (torch, mlflow...) are borrowed from this
    # environment through a .pth line, which (unlike a site folder) runs no editable-install hook.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed-deps.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n"
    )
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RDBENCH_CONF_DIR", "MLFLOW_RUN_ID")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    where = subprocess.run([python, "-c", "import rdbench, rdbench.config as c; print(rdbench.__file__); "
                            "print(c.conf_dir())"], cwd=elsewhere, env=env, capture_output=True, text=True)
    module_file, conf = where.stdout.split()
    assert Path(module_file).is_relative_to(site) and Path(conf).is_relative_to(site), where.stdout

    result = subprocess.run(
        [env_dir / "bin" / "rdbench", "run", "rd", "--profile", "smoke", "--device", "cpu", "--experiment", "wheel"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FINISHED" in result.stdout

    import mlflow

    (run,) = runs_of(mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]), "wheel")
    assert run.info.status == "FINISHED" and run.data.tags["rdbench.profile"] == "smoke"
