"""``rdbench oracle``: the DDPM exact-denoiser controls alone, no training."""

from __future__ import annotations

import click

from rdbench.commands.options import one_line_errors


@click.command()
@click.option("--dataset", default="digits", show_default=True, help="A dataset of conf/systems/ddpm.yaml.")
@click.option("--profile", default="paper", show_default=True, help="Schedule and sampler from this profile.")
@click.option("--images", default=0, show_default=True, type=click.IntRange(min=0),
              help="Training images the oracle uses (0: the whole set).")
@click.option("--samples", default=16, show_default=True, type=click.IntRange(min=1), help="Images generated per control.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--data-dir", default=None, help="Where torchvision datasets live (not needed for digits).")
@click.option("--device", default="cpu", show_default=True)
def oracle(dataset, profile, images, samples, seed, data_dir, device) -> None:
    """Balance of the DDPM exact denoiser on DATASET and on uniform noise, through the same sampler.

    A network that learned perfectly (the exact denoiser of the training set) and data
    with no structure at all: if both give R ~ 0.07, the low DDPM ratio is set by the
    noise schedule, not by under-training. Nothing is tracked.
    """
    from rdbench.study.oracle import oracle_check
    from rdbench.systems.ddpm.data import DatasetUnavailable

    with one_line_errors(ValueError, DatasetUnavailable):
        oracle_check(dataset, profile, images, samples, seed, data_dir, device, echo=click.echo)
