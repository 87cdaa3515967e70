"""Table 1, regenerated from the tracking store (and nothing else).

The report never imports a system: it reads cell runs back from MLflow (their
tags and metrics), groups them by system and case, and sets the mean and spread
over seeds beside the published values of ``conf/published.yaml``. Controls
(``control.<name>.R``: untrained, shuffled, oracle...) and alternative
magnitudes such as DDPM's ``M_diff_closed_form`` are found from the metric keys
themselves, so a new control shows up without a change here.

Which runs: the cells of the latest grid of an experiment (the parent's children
plus the finished runs it reused, from its ``grid/cells.json`` manifest), of a
given parent run, or every cell of an experiment (the latest run of each config).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from rdbench import tracking
from rdbench.config import ConfigError, conf_dir, read_yaml, validate

QUANTITIES = ("M_react", "M_diff", "R", "R_final")  # Eqs. (12)-(19) and Fig. 3
SYSTEM_NAMES = {"rd": "RD", "lstm": "LSTM", "ddpm": "DDPM"}
CONTROL_KEY = re.compile(r"^control\.(?P<name>.+)\.R$")
# e.g. M_diff_closed_form (not RD's M_reaction_u, nor the series logged while training)
ALTERNATIVE_KEY = re.compile(r"^M_(react|diff)_(?!.*during_training$).+$")
SEED_SUFFIX = re.compile(r"/seed=\d+$")
TABLE_DIR = "table"


# --------------------------------------------------------------------------- published values


class PublishedRow(BaseModel):
    """One row of Table 1 as published, with the final R_t of Fig. 3."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    cases: list[str] = Field(min_length=1, description="rdbench case names this row stands for")
    label: str
    M_react: float
    M_diff: float
    R: float
    R_final: float


class PublishedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    rows: list[PublishedRow] = Field(min_length=1)


def load_published(path: str | Path | None = None) -> dict[tuple[str, str], PublishedRow]:
    """``(system, case) -> PublishedRow`` from ``conf/published.yaml``."""
    path = Path(path) if path else conf_dir() / "published.yaml"
    spec = validate(PublishedFile, read_yaml(path), str(path))
    return {(row.system, case): row for row in spec.rows for case in row.cases}


# --------------------------------------------------------------------------- which runs


@dataclass
class Selection:
    """Cell runs read from the store, in grid order, and where they came from."""

    experiment: str
    description: str
    parent_run_id: str | None = None
    runs: list[Any] = field(default_factory=list)  # mlflow.entities.Run


def _search_all(client, experiment_ids: list[str], filter_string: str, order_by=None) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000,
            order_by=order_by or ["attributes.start_time ASC"], page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def latest_grid_run(client, experiment: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"no experiment {experiment!r} in the tracking store {client.tracking_uri}")
    found = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{tracking.TAG_KIND}` = 'grid'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not found:
        raise ConfigError(f"experiment {experiment!r} has no grid run; run `rdbench grid` first, or pass --all-cells")
    return found[0]


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No tqdm bar on the terminal for a one-file artifact download."""
    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old


def read_manifest(client, run_id: str) -> list[dict[str, Any]]:
    """The parent's ``grid/cells.json`` rows (empty when the parent has none)."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        try:
            local = client.download_artifacts(run_id, "grid/cells.json", tmp)
        except Exception:  # noqa: BLE001 - no manifest: the children alone
            return []
        return json.loads(Path(local).read_text()).get("cells", [])


def select_runs(
    client,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    all_cells: bool = False,
) -> Selection:
    """The cell runs of a parent run, of the latest grid of ``experiment``, or (``all_cells``) all of it."""
    if parent_run_id is None and not all_cells:
        parent_run_id = latest_grid_run(client, experiment).info.run_id
    if parent_run_id is not None:
        try:
            parent = client.get_run(parent_run_id)
        except Exception as exc:  # noqa: BLE001 - MlflowException on an unknown id
            raise ConfigError(f"no run {parent_run_id!r} in the tracking store: {tracking.one_line(exc)}") from None
        exp_name = client.get_experiment(parent.info.experiment_id).name
        children = _search_all(
            client, [parent.info.experiment_id],
            f"tags.`{tracking.TAG_PARENT}` = '{parent_run_id}' and tags.`{tracking.TAG_KIND}` = 'cell'",
        )
        by_id = {run.info.run_id: run for run in children}
        ordered = []
        for row in read_manifest(client, parent_run_id):
            run_id = row.get("run_id")
            if not run_id:
                continue
            run = by_id.pop(run_id, None) or client.get_run(run_id)
            ordered.append(run)
        ordered.extend(by_id.values())
        grid = parent.data.tags.get("rdbench.grid", parent.info.run_name)
        return Selection(exp_name, f"grid {grid!r} (parent run {parent_run_id})", parent_run_id, ordered)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"no experiment {experiment!r} in the tracking store {client.tracking_uri}")
    runs = _search_all(client, [exp.experiment_id], f"tags.`{tracking.TAG_KIND}` = 'cell'")
    latest: dict[str, Any] = {}
    for run in runs:  # oldest first: a later run of the same config replaces an earlier one,
        key = run.data.tags.get(tracking.TAG_HASH, run.info.run_id)
        if run.info.status == "FINISHED" or latest.get(key) is None or latest[key].info.status != "FINISHED":
            latest[key] = run  # but a FINISHED run is never replaced by an unfinished one
    return Selection(experiment, f"every cell of experiment {experiment!r}", None, list(latest.values()))


# --------------------------------------------------------------------------- cells and Table 1


def cells_frame(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per cell run: identity (tags), status, error, and every scalar metric."""
    rows = []
    for run in runs:
        tags = run.data.tags
        name = tags.get(tracking.TAG_RUN_NAME) or run.info.run_name or ""
        system = tags.get(tracking.TAG_SYSTEM, "")
        label = SEED_SUFFIX.sub("", name) or f"{system}/{tags.get(tracking.TAG_CASE, '')}"
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": name,
                "status": run.info.status,
                "system": system,
                "case": tags.get(tracking.TAG_CASE, ""),
                "variant": label.partition("/")[2] or tags.get(tracking.TAG_CASE, ""),
                "seed": int(tags.get(tracking.TAG_SEED, -1)),
                "profile": tags.get(tracking.TAG_PROFILE, ""),
                "config_hash": tags.get(tracking.TAG_HASH, ""),
                "error": tags.get(tracking.TAG_ERROR),
                **run.data.metrics,
            }
        )
    return pd.DataFrame(rows)


def control_names(columns: Sequence[str]) -> list[str]:
    """Controls present in the metric keys (``control.<name>.R``), in first-seen order."""
    names = []
    for col in columns:
        m = CONTROL_KEY.match(col)
        if m and m["name"] not in names:
            names.append(m["name"])
    return names


def alternative_metrics(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if ALTERNATIVE_KEY.match(c)]


def row_keys(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(system, variant, profile) of the FINISHED cells, in the order of first appearance."""
    if cells.empty:
        return []
    done = cells[cells["status"] == "FINISHED"]
    return list(dict.fromkeys(zip(done["system"], done["variant"], done["profile"], strict=True)))


def build_table(cells: pd.DataFrame, published: dict[tuple[str, str], PublishedRow]) -> pd.DataFrame:
    """Table 1: one row per system and case, mean and sample std over seeds beside the paper.

    Only FINISHED cells count. ``<q>_paper`` and ``<q>_delta`` (ours minus the
    paper) for q in M_react, M_diff, R, R_final; controls as ``control.<name>.<q>``.
    """
    columns = list(cells.columns)
    controls = control_names(columns)
    extras = alternative_metrics(columns)
    out = []
    for system, variant, profile in row_keys(cells):
        group = cells[
            (cells["status"] == "FINISHED") & (cells["system"] == system)
            & (cells["variant"] == variant) & (cells["profile"] == profile)
        ].sort_values("seed")
        case = group["case"].iloc[0]
        row: dict[str, Any] = {
            "system": system, "case": case, "variant": variant, "profile": profile,
            "n_seeds": len(group), "seeds": " ".join(str(s) for s in group["seed"]),
        }
        paper = published.get((system, case)) if variant == case else None
        for q in QUANTITIES:
            mean, std = _mean_std(group.get(q))
            ref = getattr(paper, q) if paper else math.nan
            row.update({q: mean, f"{q}_std": std, f"{q}_paper": ref, f"{q}_delta": mean - ref})
        for name in extras:
            row[name], row[f"{name}_std"] = _mean_std(group.get(name))
        for name in controls:
            for q in QUANTITIES:
                key = f"control.{name}.{q}"
                row[key], row[f"{key}_std"] = _mean_std(group.get(key))
        row["failed_cells"] = int(
            ((cells["status"] == "FAILED") & (cells["system"] == system) & (cells["variant"] == variant)).sum()
        )
        row["run_ids"] = " ".join(group["run_id"])
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs.update(controls=controls, extras=extras)
    return table


def _mean_std(values: pd.Series | None) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one seed) of the finite values."""
    if values is None:
        return math.nan, math.nan
    x = values.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan


# --------------------------------------------------------------------------- rendering


PARTS = ("paper", "controls")  # the two tables of the human-readable output


def display_columns(table: pd.DataFrame, part: str = "paper") -> list[tuple[str, str, str | None]]:
    """(header, value column, std column) of one part of the human-readable table.

    ``paper``: M_react, M_diff, R and R_final beside the published values and the
    difference. ``controls``: R beside each control's R and the alternative
    magnitudes (e.g. M_diff_closed_form); empty when the runs have none.
    """
    cols: list[tuple[str, str, str | None]] = [("seeds", "n_seeds", None)]
    if part == "paper":
        for q in QUANTITIES:
            cols += [(q, q, f"{q}_std"), (f"{q} paper", f"{q}_paper", None), (f"Δ{q}", f"{q}_delta", None)]
        return cols
    extras, controls = table.attrs.get("extras", []), table.attrs.get("controls", [])
    if not extras and not controls:
        return []
    cols.append(("R", "R", "R_std"))
    for name in controls:
        cols.append((f"R {name}", f"control.{name}.R", f"control.{name}.R_std"))
    for name in extras:
        cols.append((name, name, f"{name}_std"))
    return cols


def _fmt(value: Any, std: Any = None, signed: bool = False, pm: str = " ± ") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(value)
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f"{pm}{std:.4f}"
    return text


def display_rows(table: pd.DataFrame, part: str = "paper", pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of one part (empty header when the part has no column)."""
    cols = display_columns(table, part)
    if not cols:
        return [], []
    profiles = table["profile"].nunique() > 1 if len(table) else False
    header = ["system", "case", *(["profile"] if profiles else []), *[c[0] for c in cols]]
    body = []
    for _, r in table.iterrows():
        cells = [SYSTEM_NAMES.get(r["system"], r["system"]), r["variant"], *([r["profile"]] if profiles else [])]
        for head, value, std in cols:
            cells.append(_fmt(r.get(value), r.get(std) if std else None, signed=head.startswith("Δ"), pm=pm))
        body.append(cells)
    return header, body


CONTROLS_TITLE = "Controls and other magnitudes (R of each control, mean ± std over seeds):"


def to_markdown(table: pd.DataFrame) -> str:
    """Table 1 beside the paper, then (when there are any) the controls."""
    out = []
    for part in PARTS:
        header, body = display_rows(table, part)
        if not header:
            continue
        if part == "controls":
            out += ["", CONTROLS_TITLE, ""]
        out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out) + "\n"


def to_latex(table: pd.DataFrame, caption: str = "") -> str:
    """Booktabs tables (need ``\\usepackage{booktabs}``): Table 1 beside the paper, then the controls."""

    def esc(text: str) -> str:
        text = text.replace("\\", r"\textbackslash{}")
        for ch in "&%$#_{}":
            text = text.replace(ch, "\\" + ch)
        return text.replace("Δ", r"$\Delta$").replace("–", "--").replace("±", r"$\pm$")

    def esc_cell(text: str) -> str:
        return " $\\pm$ ".join(esc(part) for part in text.split(" $\\pm$ "))

    lines = []
    for part in PARTS:
        header, body = display_rows(table, part, pm=r" $\pm$ ")
        if not header:
            continue
        lines += [
            r"\begin{table}[ht]", r"\centering", r"\small",
            r"\begin{tabular}{ll" + "r" * (len(header) - 2) + "}", r"\toprule",
            " & ".join(esc(h) for h in header) + r" \\", r"\midrule",
            *[" & ".join(esc_cell(c) for c in row) + r" \\" for row in body],
            r"\bottomrule", r"\end{tabular}",
        ]
        text = caption if part == "paper" else CONTROLS_TITLE.rstrip(":")
        if text:
            lines.append(r"\caption{" + esc(text) + "}")
        lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | Path, caption: str = "") -> list[Path]:
    """``table1.csv`` (every number, full precision), ``table1.md`` and ``table1.tex``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table1.csv", out / "table1.md", out / "table1.tex"]
    table.to_csv(paths[0], index=False, float_format="%.10g")
    paths[1].write_text(to_markdown(table))
    paths[2].write_text(to_latex(table, caption))
    return paths


def log_table(client, run_id: str, table: pd.DataFrame, files: Sequence[Path]) -> str:
    """Files under ``table/`` and the table itself with ``log_table`` (shown by the MLflow UI).

    ``log_table`` appends to an existing file, so a regenerated table gets a new
    name (``table1-2.json``...); the name used is returned.
    """
    for path in files:
        client.log_artifact(run_id, str(path), TABLE_DIR)
    existing = {Path(a.path).name for a in client.list_artifacts(run_id, TABLE_DIR)}
    name, n = "table1.json", 1
    while name in existing:
        n += 1
        name = f"table1-{n}.json"
    client.log_table(run_id, data=table, artifact_file=f"{TABLE_DIR}/{name}")
    return f"{TABLE_DIR}/{name}"


@dataclass
class Report:
    """Table 1 of a selection of cell runs, and where its files went."""

    selection: Selection
    cells: pd.DataFrame
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    logged_to: str | None = None

    @property
    def caption(self) -> str:
        return f"Table 1 regenerated from {self.selection.description}"

    @property
    def note(self) -> str:
        """A short provenance line for figure titles: grid or experiment, profiles, seeds."""
        profiles = ", ".join(dict.fromkeys(self.table["profile"]))
        seeds = ", ".join(str(n) for n in dict.fromkeys(self.table["n_seeds"]))
        where = self.selection.description.split(" (parent run")[0]
        return f"{where}; profile {profiles}; seeds per row: {seeds}"


def build_report(selection: Selection, published_path: str | Path | None = None) -> Report:
    """Cells and Table 1 of ``selection`` (an error if none of its cells FINISHED)."""
    cells = cells_frame(selection.runs)
    if cells.empty or not (cells["status"] == "FINISHED").any():
        raise ConfigError(f"{selection.description} has no FINISHED cell run to tabulate")
    return Report(selection, cells, build_table(cells, load_published(published_path)))


def print_report(
    client,
    parent_run_id: str | None,
    experiment: str | None,
    out_dir: str | Path,
    *,
    all_cells: bool = False,
    figures: bool = True,
    table: bool = True,
    log: bool = True,
    log_scale: bool = False,
    published_path: str | Path | None = None,
) -> Report:
    """Table 1 and/or the figures of a selection: written to ``out_dir``, logged to the parent, printed."""
    from rdbench.figures import make_figures

    selection = select_runs(client, experiment, parent_run_id, all_cells)
    report = build_report(selection, published_path)
    target = selection.parent_run_id if log else None
    if table:
        click.echo(f"\nTable 1 from {selection.description}, experiment {selection.experiment!r}:")
        click.echo(to_markdown(report.table))
        for _, cell in report.cells[report.cells["status"] != "FINISHED"].iterrows():
            click.echo(f"  not in the table: {cell['run_name']} {cell['status']}: {cell['error'] or ''}")
        report.files = write_table(report.table, out_dir, report.caption)
        if target:
            log_table(client, target, report.table, report.files)
    if figures:
        report.files += make_figures(
            client, report.cells, load_published(published_path), out_dir,
            parent_run_id=target, log_scale=log_scale, title_note=report.note,
        )
    click.echo("wrote " + ", ".join(str(p) for p in report.files))
    if target:
        report.logged_to = target
        click.echo(f"logged to the parent run {target}")
    return report


def selection_options(func):
    """--experiment / --parent / --all-cells / --out / --no-log, shared by `table` and `figures`."""
    options = [
        click.option("--experiment", default=None,
                     help="MLflow experiment. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'."),
        click.option("--parent", "parent_run_id", default=None, metavar="RUN_ID",
                     help="A grid's parent run. Default: the latest grid run of the experiment."),
        click.option("--all-cells", is_flag=True,
                     help="Every cell of the experiment (the latest run of each config) instead of one grid."),
        click.option("--out", "out_dir", default="outputs/report", show_default=True, help="Where files are written."),
        click.option("--log/--no-log", default=True, show_default=True, help="Log the files to the grid's parent run."),
        click.option("--published", "published_path", default=None, type=click.Path(exists=True, dir_okay=False),
                     help="Published values (default conf/published.yaml)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_report_command(experiment, parent_run_id, all_cells, out_dir, log, published_path, **kwargs) -> None:
    from rdbench import cli

    if parent_run_id and all_cells:
        raise cli.CliError("--parent and --all-cells exclude each other")
    experiment = cli.experiment_name(experiment)
    try:
        print_report(tracking.client(), parent_run_id, experiment, out_dir, all_cells=all_cells,
                     log=log, published_path=published_path, **kwargs)
    except ConfigError as exc:
        raise cli.CliError(str(exc)) from None


@click.command("table")
@selection_options
def table_command(experiment, parent_run_id, all_cells, out_dir, log, published_path) -> None:
    """Regenerate Table 1 from the tracking store: CSV, Markdown and LaTeX, beside the published values.

    Reads the cells of the latest grid (or --parent RUN_ID, or --all-cells),
    prints the table, writes it to --out and logs it to the grid's parent run
    (artifacts and an MLflow table the UI shows).
    """
    run_report_command(experiment, parent_run_id, all_cells, out_dir, log, published_path, figures=False)

