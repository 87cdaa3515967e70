#!/usr/bin/env python3
"""Apply the current label rule to finished phase maps' tables, and compare two of them.

A map's ``points.csv`` keeps the measures its labels came from (``v_std``, ``grid_share``
...): :func:`rdbench.phase.labels.relabel` re-applies the rule of ``conf/phase/rd.yaml``
from them (exact; see its docstring). Prints the label counts; with ``--second`` (the same
points under a second setting, e.g. the child map of ``rdbench phase --compare``), also the
count table of the comparison, and with ``--out`` writes its figures and tables there
(``relabelled.csv`` and its ``summary.csv``; ``label_changes.png``, ``abs_dR.png``, ``counts.csv``,
``points.csv`` of the comparison):

    python scripts/phase_relabel.py map/points.csv --second map_etdrk4/points.csv --what scheme=etdrk4 --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from rdbench.phase.compare import compare_points, count_table, label_change_figure
from rdbench.phase.figures import heatmap, summarise
from rdbench.phase.labels import relabel
from rdbench.phase.landmarks import Landmarks
from rdbench.phase.plan import load_phase_config, plan_map


def counts(table: pd.DataFrame) -> str:
    return ", ".join(f"{k} {v}" for k, v in table["label"].value_counts().items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", help="a finished map's points.csv")
    parser.add_argument("--second", help="the same points under a second setting")
    parser.add_argument("--what", default="second", help="the second setting, for titles (e.g. scheme=etdrk4)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="the maps' settings (grid_size, domain_length ...), for the landmarks")
    parser.add_argument("--out", help="write the relabelled table and the comparison's figures here")
    args = parser.parse_args()
    rule = load_phase_config("rd").labels
    first = pd.read_csv(args.points)
    print(f"{args.points}: as stored: {counts(first)}")
    first = first.assign(label=relabel(first, rule))
    print(f"{args.points}: current rule: {counts(first)}")
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        first.to_csv(out / "relabelled.csv", index=False)
        summarise(first).to_csv(out / "summary.csv", index=False)
    if not args.second:
        return
    second = pd.read_csv(args.second)
    second = second.assign(label=relabel(second, rule))
    print(f"{args.second}: current rule: {counts(second)}")
    both = compare_points(first, second)
    table = count_table(both)
    print(f"labels (rows) against {args.what} (columns); {int(both['changed'].sum())} of {len(both)} change:")
    print(table.to_string(index=False))
    finite = both["abs_dR"].dropna()
    print(f"|Delta R|: median {finite.median():.3g}, max {finite.max():.3g} over {len(finite)} points")
    if out:
        overrides = {k: float(v) if k != "grid_size" else int(v) for k, v in (s.split("=", 1) for s in args.sets)}
        axes = {name: f"{first[name].min():g}:{first[name].max():g}:{first[name].nunique()}" for name in ("feed", "kill")}
        plan = plan_map("rd", axes["feed"], axes["kill"], overrides=overrides)
        landmarks = Landmarks(plan.settings)
        both.to_csv(out / "points.csv", index=False)
        table.to_csv(out / "counts.csv", index=False)
        per_point = both.groupby(["feed", "kill"], as_index=False)["abs_dR"].mean()
        for stem, fig in {
            "label_changes": label_change_figure(both, args.what, plan.marked, landmarks),
            "abs_dR": heatmap(per_point, "abs_dR", f"|R - R({args.what})|", "viridis", plan.marked, landmarks),
        }.items():
            fig.savefig(out / f"{stem}.png", dpi=100)
            plt.close(fig)


if __name__ == "__main__":
    main()
