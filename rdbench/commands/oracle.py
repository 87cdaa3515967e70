"""``rdbench oracle``: the DDPM exact-denoiser controls alone, no training."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    count,
    experiment_name,
    experiment_option,
    one_line_errors,
    open_tracking,
    progress_bar,
    seed_type,
    store_errors,
)


@click.command()
@click.option("--dataset", default="digits", show_default=True, help="A dataset of conf/systems/ddpm.yaml.")
@click.option("--profile", default="paper", show_default=True, help="Schedule and sampler from this profile.")
@click.option("--images", default=0, show_default=True, type=count(0),
              help="Training images the oracle uses (0: the whole set).")
@click.option("--samples", default=16, show_default=True, type=count(1), help="Images generated per control.")
@click.option("--seed", default=0, show_default=True, type=seed_type)
@click.option("--data-dir", default=None, help="Where torchvision datasets live (not needed for digits).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--sweep", is_flag=True,
              help="Sweep noise schedules, variances and T (conf/sweeps/oracle.yaml) and track it as one MLflow run.")
@click.option("--sweep-config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Another sweep file (default conf/sweeps/oracle.yaml).")
@experiment_option
@click.option("--out", "out_dir", default="outputs/oracle-sweep", show_default=True,
              help="Where the sweep's table, fits and figure are written.")
def oracle(dataset, profile, images, samples, seed, data_dir, device, sweep, sweep_config, experiment, out_dir) -> None:
    """Balance of the DDPM exact denoiser on DATASET and on uniform noise, through the same sampler.

    A network that learned perfectly (the exact denoiser of the training set) and data
    with no structure at all: if both give R ~ 0.07, the low DDPM ratio is set by the
    noise schedule, not by under-training. Nothing is tracked, except with --sweep:
    R of the exact denoiser for each schedule, variance and number of steps T, with the
    fitted exponent of R ~ c T^b, as one MLflow run.
    """
    from rdbench.systems.ddpm.data import DatasetUnavailable

    if sweep:
        from rdbench.study.oracle import fits_lines, oracle_sweep, sweep_markdown

        open_tracking()
        with one_line_errors(ValueError, DatasetUnavailable, *store_errors()):
            result, run_id = oracle_sweep(experiment_name(experiment), out_dir, sweep_config, device, data_dir,
                                          progress_bar, echo=click.echo)
        click.echo(sweep_markdown(result))
        for line in fits_lines(result):
            click.echo(line)
        click.echo(f"{len(result.table)} cells in {result.wall_s:.0f} s on {result.device}; wrote {out_dir}; run {run_id}")
        return
    from rdbench.study.oracle import oracle_check

    with one_line_errors(ValueError, DatasetUnavailable):
        oracle_check(dataset, profile, images, samples, seed, data_dir, device, echo=click.echo)
