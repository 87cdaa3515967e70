"""``rdbench bench rd|lstm|ddpm``: throughput beside a baseline, measured side by side in one run."""

from __future__ import annotations

import click

from rdbench.commands.options import MAX_PROCESSES, count, one_line_errors

Positive = count(1)
device_choice = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
rounds_option = click.option("--rounds", default=5, show_default=True, type=Positive,
                             help="Interleaved rounds; the best of each variant is kept.")


@click.group()
def bench() -> None:
    """Benchmarks that print side-by-side throughput ratios."""


@bench.command("rd")
@click.option("--grid-size", default=256, show_default=True, type=Positive, help="Cells per side.")
@click.option("--steps", default=300, show_default=True, type=Positive,
              help="Steps per timed round (with --memory: the first mark; the second is 10x).")
@click.option("--batch", default=1, show_default=True, type=Positive, help="Samples advanced together.")
@rounds_option
@device_choice
@click.option("--threads", default=None, type=Positive, help="torch CPU threads. Default: PyTorch's.")
@click.option("--memory", is_flag=True,
              help="Instead of timing: resident memory after --steps and 10x --steps steps, and its growth.")
@click.option("--eager", is_flag=True, help="With --memory: the eager step (kernel: eager) instead of the default one.")
def bench_rd(grid_size, steps, batch, rounds, device, threads, memory, eager) -> None:
    """Gray-Scott throughput: rdbench (eager and fused) against a numpy np.roll step."""
    import torch

    from rdbench.bench.rd import bench_rd as measure
    from rdbench.bench.rd import bench_rd_memory

    if threads:
        torch.set_num_threads(threads)
    with one_line_errors(ValueError):
        if memory:
            bench_rd_memory(grid_size, steps, batch, device, kernel="eager" if eager else "auto", echo=click.echo)
        else:
            measure(grid_size, steps, batch, rounds, device, echo=click.echo)


@bench.command("lstm")
@click.option("--batch", default=256, show_default=True, type=Positive, help="Sequences per batch.")
@click.option("--seq-len", default=200, show_default=True, type=count(2), help="Values per sequence.")
@click.option("--hidden", default=16, show_default=True, type=Positive, help="Hidden units.")
@click.option("--train-steps", default=3, show_default=True, type=Positive, help="Adam steps per timed training round.")
@rounds_option
@device_choice
@click.option("--threads", default=None, type=Positive, help="torch CPU threads. Default: PyTorch's.")
def bench_lstm(batch, seq_len, hidden, train_steps, rounds, device, threads) -> None:
    """LSTM: fused nn.LSTM training vs an nn.LSTMCell loop; the probe vs a plain nn.LSTM forward."""
    from rdbench.bench.lstm import bench_lstm as measure

    with one_line_errors(ValueError):
        measure(batch, seq_len, hidden, train_steps, rounds, device, threads, echo=click.echo)


@bench.command("ddpm")
@click.option("--profile", default="quick", show_default=True, help="Settings profile whose U-Net is timed (paper, quick, smoke).")
@device_choice
@click.option("--batch", default=None, type=Positive, help="Training batch (default: the profile's batch_size).")
@click.option("--channels", default="1", type=click.Choice(["1", "3"]), show_default=True,
              help="Image channels (1: MNIST-like, 3: CIFAR10-like).")
@click.option("--train-steps", default=5, show_default=True, type=Positive, help="Training steps per timed round.")
@click.option("--sampling-steps", default=30, show_default=True, type=count(2),
              help="Reverse steps per timed sampling round.")
@click.option("--sampling-rounds", default=10, show_default=True, type=Positive,
              help="Interleaved sampling rounds (best and median kept).")
@click.option("--samples", default=None, type=Positive, help="Images per sampling batch (default: the profile's sampler.batch_size).")
@click.option("--rounds", default=3, show_default=True, type=Positive, help="Interleaved rounds; the best of each variant is kept.")
@click.option("--m-diff-samples", default=2, show_default=True, type=count(0),
              help="Samples for the M_diff check at the paper settings (0 skips it).")
@click.option("--profile-steps", default=3, show_default=True, type=count(0),
              help="Training steps under torch.profiler for the top-kernel tables (0 skips them).")
def bench_ddpm(profile, device, batch, channels, train_steps, sampling_steps, sampling_rounds, samples, rounds,
               m_diff_samples, profile_steps) -> None:
    """DDPM: U-Net training images/s vs diffusers' UNet2DModel; probe cost; M_diff vs Table 1."""
    from rdbench.bench.ddpm import bench_ddpm as measure

    with one_line_errors(ValueError):
        measure(profile, device, batch, int(channels), train_steps, sampling_steps, sampling_rounds, samples,
                rounds, m_diff_samples, profile_steps, echo=click.echo)


@bench.command("store")
@click.option("--target", "targets", multiple=True,
              help="server (a temporary PostgreSQL-backed MLflow server), sqlite-fresh, sqlite-existing, or a "
                   "tracking URI. Repeatable. Default: the three named ones.")
@click.option("--processes", "process_counts", multiple=True, type=count(1, MAX_PROCESSES), help="Concurrent cells. Repeatable. Default: 8 and 16.")
@click.option("--params", default=60, show_default=True, type=Positive, help="Params per cell.")
@click.option("--series", default=4, show_default=True, type=Positive, help="Series per cell.")
@click.option("--points", default=2000, show_default=True, type=Positive, help="Points per series.")
@click.option("--artifacts", default=3, show_default=True, type=Positive, help="Artifacts per cell.")
@click.option("--retries", default=0, show_default=True, type=count(0), help="Retries per failing operation.")
@click.option("--experiment-exists", is_flag=True, help="Create the experiment before the workers start, as a grid's driver does.")
@click.option("--server-workers", default=2, show_default=True, type=count(1, MAX_PROCESSES), help="MLflow server workers for --target server.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False), help="Where stores and logs go (default: a temp folder).")
def bench_store(targets, process_counts, params, series, points, artifacts, retries, experiment_exists,
                server_workers, workdir) -> None:
    """N processes log a realistic cell each into one store at once: landed, lost, errors, retries, time, memory."""
    from rdbench.bench.store import TARGETS, CellShape, run_store_benchmark

    with one_line_errors(ValueError):
        shape = CellShape(params=params, series=series, points=points, artifacts=artifacts)
        run_store_benchmark(targets or TARGETS, process_counts or (8, 16), shape=shape, retries=retries,
                            experiment_exists=experiment_exists, workdir=workdir, server_workers=server_workers,
                            echo=click.echo)


@bench.command("ray")
@click.option("--cells", default=6, show_default=True, type=Positive, help="LSTM cells in the grid.")
@click.option("--epochs", default=400, show_default=True, type=Positive, help="Training epochs per cell.")
@click.option("--workers", "worker_counts", multiple=True, type=count(1, MAX_PROCESSES),
              help="CPUs of a local Ray instance. Repeatable. Default: 1 and 2.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False), help="Where stores go (default: a temp folder).")
def bench_ray(cells, epochs, worker_counts, workdir) -> None:
    """A small grid in-process vs on local Ray with 1 and 2 workers: wall time, overhead per cell, speed-up, memory."""
    from rdbench.bench.ray import bench_ray as measure

    with one_line_errors(ValueError, RuntimeError):
        measure(cells, epochs, worker_counts or (1, 2), workdir, echo=click.echo)
