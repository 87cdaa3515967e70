"""``rdbench bench ray``: the side-by-side run for real, tiny, on a local Ray instance inside the
test network namespace (Ray binds only loopback there; its token in a file of the test's); and its
bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from rdbench.cli import main


def test_bad_sizes_are_one_line_errors():
    result = CliRunner().invoke(main, ["bench", "ray", "--cells", "0"])
    assert result.exit_code == 2 and "--cells" in result.output


@pytest.mark.services
@pytest.mark.slow
def test_the_bench_prints_every_variant_beside_the_in_process_one(netns, tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex * 2)
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "PYTEST_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]), RAY_USAGE_STATS_ENABLED="0",
               MLFLOW_DISABLE_TELEMETRY="true", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    proc = subprocess.run(  # Ray binds only loopback inside the namespace
        netns.inside([sys.executable, "-m", "rdbench", "bench", "ray", "--cells", "2", "--epochs", "2",
                      "--workers", "1", "--workdir", str(tmp_path / "work")]),
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {m[1].strip(): m[2] for m in re.finditer(r"^(in-process|ray, 1 worker)\s+(.*)$", proc.stdout, re.M)}
    assert set(rows) == {"in-process", "ray, 1 worker"}, proc.stdout
    for line in rows.values():
        startup, grid, per_cell, *rest = line.split()
        assert float(grid) > 0 and abs(float(per_cell) - float(grid) / 2) < 0.06  # both rounded
        assert "2/2" in line  # every cell FINISHED
        assert float(rest[-1]) >= float(rest[-2]) > 0  # peak of all processes >= the driver's
    assert "load average" in proc.stdout
