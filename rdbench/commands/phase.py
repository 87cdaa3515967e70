"""``rdbench phase SYSTEM``: R and the pattern at every (F, k) of a grid, as one MLflow run."""

from __future__ import annotations

from pathlib import Path

import click

from rdbench.commands.options import (
    CliError,
    device_option,
    experiment_name,
    experiment_option,
    one_line_errors,
    open_tracking,
    options,
    parse_sets,
    run_context,
    seed_type,
    set_option,
    store_errors,
)
from rdbench.config import available_systems

phase_resume_option = click.option(
    "--resume/--no-resume", default=True, show_default=True,
    help="Continue the latest unfinished run of the same map at its first unfinished chunk (a finished one "
         "is reused); --no-resume starts a new run.",
)
compare_option = click.option(
    "--compare", "compare", multiple=True, metavar="SETTING=VALUE",
    help="Run the same points again with this setting changed (repeatable: one second setting of several keys, "
         "e.g. --compare scheme=etdrk4, or --compare dt=1 --compare steps=10000) and log the label changes, "
         "|Delta R| and a count table into the first map's run (phase/compare/).",
)
max_memory_option = click.option(
    "--max-memory", default=None, metavar="SIZE",
    help="Memory budget of one chunk of rows (2GB, 512MB, 1.5GiB). Default: a fraction of what the device "
         "has available (conf/phase/SYSTEM.yaml).",
)


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rdbench phase rd --feed 0.01:0.08:32 --kill 0.03:0.07:32 --seed 0\n\n"
        "  rdbench phase rd --feed 0.01:0.08:16 --kill 0.03:0.07:16 --profile quick --max-memory 2GB\n\n"
        "  rdbench phase rd --feed 0.01:0.08:16 --kill 0.03:0.07:16 --compare scheme=etdrk4\n\n"
        "START:STOP:N is N evenly spaced values from START to STOP inclusive. Every other\n"
        "setting comes from conf/systems/SYSTEM.yaml, its --profile and --set."
    ),
)
@click.argument("system")
@click.option("--feed", required=True, metavar="START:STOP:N", help="Feed rates F.")
@click.option("--kill", required=True, metavar="START:STOP:N", help="Kill rates k.")
@click.option("-s", "--seed", "seeds", multiple=True, type=seed_type, help="Random seed. Repeatable (repeats give a spread). Default: 0.")
@click.option("-p", "--profile", default="paper", show_default=True, help="Settings profile: paper, quick, smoke.")
@options(
    set_option,
    compare_option,
    max_memory_option,
    device_option,
    experiment_option,
    phase_resume_option,
    click.option("--out", "out_dir", default=None, metavar="DIR", help="Also copy the table and figures here."),
)
def phase(system, feed, kill, seeds, profile, sets, compare, max_memory, device, experiment, resume, out_dir) -> None:
    """Map R, R_final and the pattern over the (F, k) plane of SYSTEM (rd) in one MLflow run.

    Points run as rows of batched simulations, in chunks sized to the memory budget; each
    chunk is saved to the run as it ends, so a killed map resumes where it stopped. The
    same as rdbench.phase() from Python (docs/api.md).
    """
    overrides = parse_sets(sets)
    if system not in available_systems():  # before the heavy imports
        raise CliError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    import rdbench.api as api

    changed = parse_sets(compare)
    what = ",".join(compare)
    with one_line_errors():
        plan = api.plan_map(system, feed, kill, seeds or (0,), profile, overrides)
        second = api.plan_map(system, feed, kill, seeds or (0,), profile, {**overrides, **changed}, what) if compare else None
    if second is not None and second.config_hash == plan.config_hash:
        raise CliError(f"--compare {what}: changes no setting of the map; give a value that differs")
    ctx = run_context(device, None)
    with one_line_errors():
        rows, budget = api.size_chunks(plan, ctx.device, max_memory)
        second_rows = api.size_chunks(second, ctx.device, max_memory) if second is not None else None
    run_id = run_map(plan, rows, budget, ctx.device, experiment, resume, None if second else out_dir)
    if second is None:
        return
    second_id = run_map(second, *second_rows, ctx.device, experiment, resume, None, parent_run_id=run_id)
    compare_maps(plan, run_id, second_id, what, out_dir)


def compare_maps(plan, run_id: str, second_id: str, what: str, out_dir: str | None) -> None:
    """Log the comparison of two finished maps into the first one's run; print the count table."""
    from rdbench.phase.compare import log_comparison, points_of
    from rdbench.phase.landmarks import Landmarks
    from rdbench.tracking.runs import TrackedRun

    client = open_tracking()
    with one_line_errors(*store_errors()):
        counts = log_comparison(TrackedRun(client, run_id), points_of(client, run_id), points_of(client, second_id),
                                what, second_id, plan.marked, Landmarks(plan.settings))
    click.echo(f"labels of the map (rows) against {what} (columns), in run {run_id} (phase/compare/):")
    click.echo(counts.to_string(index=False))
    if out_dir:
        download_phase(client, run_id, out_dir)


def run_map(plan, rows: int, budget: int, device, experiment: str | None, resume: bool, out_dir: str | None,
            parent_run_id: str | None = None) -> str:
    """Run one planned map, printing a line per chunk and its cost (also what `rdbench grid` calls); return
    its run id."""
    import rdbench.api as api
    from rdbench.phase.mapping import SKIPPED

    client = open_tracking()
    experiment = experiment_name(experiment)
    click.echo(f"{plan.name}: {len(plan.points)} points in chunks of {rows} rows "
               f"({budget / 2**20:.0f} MiB budget) on {device} -> experiment {experiment!r}")

    def on_chunk(chunk, done: int, total: int) -> None:
        rate = chunk.cell_updates / chunk.wall_s if chunk.wall_s else float("nan")
        click.echo(f"  {done}/{total} points: chunk of {len(chunk.rows)} in {chunk.wall_s:.1f} s "
                   f"({rate:.3g} cell-updates/s)")

    with one_line_errors(*store_errors()):
        result = api.run_map(plan, rows, budget, device, experiment, resume, parent_run_id=parent_run_id,
                             on_chunk=on_chunk)
    if result.status == SKIPPED:
        click.echo(f"{plan.name}: already finished in run {result.run_id} (--no-resume runs it again)")
    else:
        labels = ", ".join(f"{k} {v}" for k, v in result.table["label"].value_counts().items())
        click.echo(f"{plan.name}: {len(result.table)} points ({result.chunks_run} chunks run, "
                   f"{result.chunks_reused} reused) in {result.wall_time_s:.1f} s, "
                   f"{result.cell_updates_per_s:.3g} cell-updates/s, peak RSS {result.peak_rss_mib:.0f} MiB"
                   + (f", peak CUDA {result.peak_device_mib:.0f} MiB" if result.peak_device_mib is not None else "")
                   + f"; {labels}; run {result.run_id}")
    if out_dir:
        download_phase(client, result.run_id, out_dir)
    return result.run_id


def download_phase(client, run_id: str, out_dir: str) -> None:
    """Copy a map's ``phase/`` artifacts (table, figures, comparison) to ``out_dir``."""
    from rdbench.tracking.store import quiet_downloads

    with one_line_errors(*store_errors(), OSError), quiet_downloads():  # no progress bar in the log
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = client.download_artifacts(run_id, "phase", out_dir)
    click.echo(f"table and figures in {path}")
