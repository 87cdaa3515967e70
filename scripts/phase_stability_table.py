#!/usr/bin/env python3
"""Which points of a phase map's table the explicit-Euler stability estimate calls unstable.

Reads a map's ``points.csv`` (e.g. the committed ``docs/phase_map/32x32/points.csv``) and
prints, per label, how many points lie on each side of the estimate
(:mod:`rdbench.systems.grayscott_stability`) for the paper profile's grid and dt (or
``--set`` ones), and the label counts:

    python scripts/phase_stability_table.py docs/phase_map/32x32/points.csv
"""

from __future__ import annotations

import argparse

import pandas as pd

from rdbench.config import load_system
from rdbench.systems.grayscott_stability import euler_amplification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", help="a phase map's points.csv")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of conf/systems/rd.yaml (grid_size, domain_length, dt, ...)")
    args = parser.parse_args()
    overrides = {key: float(value) if key != "grid_size" else int(value)
                 for key, value in (item.split("=", 1) for item in args.sets)}
    s = load_system("rd").resolve("spot", overrides=overrides)
    points = pd.read_csv(args.points)
    points["euler_unstable"] = [
        euler_amplification(f, k, s.diffusion_u, s.diffusion_v, s.dt, s.grid_size, s.dx) > 1
        for f, k in zip(points["feed"], points["kill"], strict=True)
    ]
    print(f"{args.points}: {len(points)} points; grid {s.grid_size}, dx {s.dx:g}, dt {s.dt:g}")
    print("labels:", ", ".join(f"{k} {v}" for k, v in points["label"].value_counts().items()))
    print(pd.crosstab(points["label"], points["euler_unstable"]).to_string())


if __name__ == "__main__":
    main()
