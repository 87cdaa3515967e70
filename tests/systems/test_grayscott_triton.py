"""The Triton Gray-Scott kernel (``kernel: triton``), checked on CPU through Triton's interpreter.

Triton switches its interpreter on at import time (``TRITON_INTERPRET=1``), so each check runs
in a fresh process (:mod:`triton_interpreter_checks`); the settings checks run here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdbench.config import ConfigError, load_system
from rdbench.systems.grayscott import GrayScott, step_kernel

pytest.importorskip("triton")
CHECKS = Path(__file__).with_name("triton_interpreter_checks.py")
ROOT = Path(__file__).resolve().parents[2]


def smoke(**overrides):
    return load_system("rd").resolve("spot", "smoke", overrides)


@pytest.mark.parametrize("check", ["kernel_matches_reference", "simulation_matches_eager", "fallback_hands_over_mid_run"])
def test_under_the_interpreter(check):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(CHECKS), check], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok {check}" in done.stdout


def test_auto_picks_the_compiled_step_on_cpu_and_float64():
    assert step_kernel(smoke(kernel="auto"), torch.device("cpu")) == "compiled"
    assert step_kernel(smoke(kernel="eager"), torch.device("cpu")) == "eager"
    assert step_kernel(smoke(kernel="auto", dtype="float64"), torch.device("cuda")) == "compiled"


def test_triton_is_refused_on_cpu_without_the_interpreter_and_with_float64():
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs Triton's interpreter")
    with pytest.raises(ConfigError, match=r"kernel=triton runs on CUDA \(device is cpu\)"):
        step_kernel(smoke(kernel="triton"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="kernel=triton needs dtype=float32, got dtype=float64"):
        GrayScott().check(smoke(kernel="triton", dtype="float64"))


def test_an_unknown_kernel_is_refused():
    with pytest.raises(ConfigError, match="kernel"):
        smoke(kernel="cuda")


@pytest.mark.parametrize("measured, check", [(False, False), (True, False), (True, True)])
def test_the_kernel_compiles_for_sm_90_without_spilling(measured, check, tmp_path):
    """The CUDA build (not the interpreter) of the three variants, for an H100/H200, with Triton's
    own ptxas, no GPU needed: it lowers, keeps its four/six atomic adds, and spills no register."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs Triton's interpreter")
    from rdbench.systems.grayscott_kernels import compile_for

    kernel = compile_for(90, 200, measured, check)
    ptx = kernel.asm["ptx"]
    assert ptx.count("atom.global") == 4 * measured + 2 * check
    ptxas = Path(__import__("triton").__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.exists():
        pytest.skip("no ptxas in this triton")
    source = tmp_path / "kernel.ptx"
    source.write_text(ptx)
    report = subprocess.run([str(ptxas), "-arch=sm_90a", "-v", str(source), "-o", os.devnull],
                            capture_output=True, text=True, timeout=120).stderr
    assert "0 bytes spill stores" in report, report
