"""Benchmark commands: each prints, from one run, rdbench's throughput beside a baseline.

Speed targets live here, never in unit tests: the machines are shared and noisy, so
a benchmark measures both sides in the same process, interleaved, and prints the ratio.
Each system adds one module with a click command and one line below.
"""

import click

from rdbench.bench.ddpm import bench_ddpm
from rdbench.bench.lstm import bench_lstm
from rdbench.bench.rd import bench_rd


@click.group()
def bench() -> None:
    """Benchmarks that print side-by-side throughput ratios."""


bench.add_command(bench_rd, "rd")
bench.add_command(bench_lstm, "lstm")
bench.add_command(bench_ddpm, "ddpm")
