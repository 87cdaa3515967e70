"""Run the oracle sweep (conf/sweeps/oracle.yaml) and write its table, fits and figure.

    python scripts/oracle_sweep.py docs/oracle_sweep

30 cells, 32 400 reverse steps with the exact denoiser of the 1797 digits: 673 s of CPU
time (2 torch threads), 1540 s of wall time on the shared 2-core machine (load average
8 to 19), peak RSS 765 MiB, at the commit that added docs/oracle_sweep/.

Prints every row as it is measured, then the fitted exponents, the wall time and the peak
resident memory; writes OUT/table.csv, OUT/table.md, OUT/fits.csv and OUT/R_vs_T.png.
A stand-in for `rdbench oracle --sweep` (which will also log the sweep as one MLflow run).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

from rdbench.systems.ddpm.sweep import load_sweep_settings, run_sweep


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sweep = load_sweep_settings()
    columns = ("schedule", "variance", "timesteps", "M_react", "M_diff", "R", "R_final", "seconds")
    print("  ".join(columns), flush=True)
    result = run_sweep(sweep, on_row=lambda row: print(
        "  ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns), flush=True))
    result.table.to_csv(out / "table.csv", index=False)
    result.fits.to_csv(out / "fits.csv", index=False)
    wide = result.table.pivot_table(index="timesteps", columns=["schedule", "variance"], values="R", sort=False)
    header = ["T"] + [f"{s} {v}" for s, v in wide.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(t)] + [f"{r:.4f}" for r in row]) + " |" for t, row in wide.iterrows()]
    lines += ["| fitted exponent b (R ~ c T^b) | " + " | ".join(
        f"{result.fits[(result.fits.schedule == s) & (result.fits.variance == v)].exponent.iloc[0]:.3f}"
        for s, v in wide.columns) + " |"]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    result.figure().savefig(out / "R_vs_T.png", dpi=120)
    print(result.fits.to_string(index=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sweep {result.wall_s:.0f} s, {time.perf_counter() - start:.0f} s with start-up, peak RSS {peak:.0f} MiB, "
          f"{torch.get_num_threads()} torch threads, on {result.device}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "oracle_sweep"))
