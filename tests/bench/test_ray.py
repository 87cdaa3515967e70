"""``rdbench bench ray``: the side-by-side run for real, tiny, on a local Ray instance inside the
test network namespace (Ray binds only loopback there); and its bad input."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rdbench.cli import main


def test_bad_sizes_are_one_line_errors():
    result = CliRunner().invoke(main, ["bench", "ray", "--cells", "0"])
    assert result.exit_code == 2 and "--cells" in result.output


@pytest.mark.services
@pytest.mark.slow
def test_the_bench_prints_every_variant_beside_the_in_process_one(netns, ray_cluster, tmp_path):
    # the cluster's environment (its token file, no telemetry, this checkout on PYTHONPATH); the bench
    # starts a local Ray instance of its own beside the cluster
    env = ray_cluster.env
    proc = subprocess.run(
        netns.inside([sys.executable, "-m", "rdbench", "bench", "ray", "--cells", "2", "--epochs", "2",
                      "--workers", "1", "--workdir", str(tmp_path)]),
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {m[1].strip(): m[2] for m in re.finditer(r"^(in-process|ray, 1 worker)\s+(.*)$", proc.stdout, re.M)}
    assert set(rows) == {"in-process", "ray, 1 worker"}, proc.stdout
    for line in rows.values():
        startup, grid, per_cell, *rest = line.split()
        assert float(grid) > 0 and abs(float(per_cell) - float(grid) / 2) < 0.01
        assert "2/2" in line  # every cell FINISHED
        assert float(rest[-1]) >= float(rest[-2]) > 0  # peak of all processes >= the driver's
    assert "load average" in proc.stdout
