"""Redraw an oracle sweep's figure from its stored table, without measuring again.

    python scripts/redraw_oracle_sweep.py docs/oracle_sweep

Reads ``table.csv`` and ``fits.csv`` of the folder (what ``rdbench oracle --sweep`` wrote) and
writes ``R_vs_T.png`` again with the sweep's own figure function, so a change of the figure
(e.g. coinciding variances drawn once and named) reaches the committed one in a second; the
numbers are the stored ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from rdbench.systems.ddpm.sweep import sweep_figure

DPI = 120  # as rdbench.study.oracle.oracle_sweep saves it


def main(folder: str) -> None:
    out = Path(folder)
    figure = sweep_figure(pd.read_csv(out / "table.csv"), pd.read_csv(out / "fits.csv"))
    figure.savefig(out / "R_vs_T.png", dpi=DPI)
    print(f"wrote {out / 'R_vs_T.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/oracle_sweep")
