"""The user's own series for the LSTM system: ``csv:FILE`` and ``npy:FILE``.

A file holds one scalar sequence per row (``file.layout: rows``, the default) or
per column (``columns``), all of the same length:

* **csv**: plain numbers separated by ``file.delimiter`` (``,``), after
  ``file.header_rows`` lines that are skipped (0: no header); blank lines at the
  end are ignored. Every cell must be a finite number.
* **npy**: a 2-D numeric array saved with ``np.save``.

The sequences then go through what the generated datasets go through
(:func:`~rdbench.systems.lstm.data.make_dataset`): the first ``1 - test_fraction``
of them (in file order) train, the rest test, both z-scored with the training mean
and standard deviation when ``file.normalise`` is set. ``n_sequences`` and
``seq_len``, when set, keep only the first sequences and the first values of each
(null: all of them).

Every problem is one :class:`~rdbench.config.ConfigError` line naming the file and
the place: the line and column of a CSV (both counted from 1), the index of an npy
array (from 0, as numpy counts).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt

from rdbench.config import ConfigError, Settings

FILE_KINDS = ("csv", "npy")


class FileSeriesSettings(Settings):
    """How a series file is read (``csv:`` / ``npy:`` datasets)."""

    layout: Literal["rows", "columns"]  # one sequence per row, or per column
    delimiter: str = Field(min_length=1, max_length=1)  # csv: the separator
    header_rows: NonNegativeInt  # csv: lines skipped at the top
    normalise: bool  # z-score with the training mean and std, as the generated ODE sets


def _cell(text: str, source: str, line: int, column: int, header_rows: int) -> float:
    where = f"{source}: line {line}, column {column}"
    if not text.strip():
        raise ConfigError(f"{where}: empty cell; every cell must be a number")
    try:
        value = float(text)
    except ValueError:
        hint = " (a header? set file.header_rows=1)" if line == header_rows + 1 else ""
        raise ConfigError(f"{where}: {text.strip()!r} is not a number{hint}") from None
    if not np.isfinite(value):
        raise ConfigError(f"{where}: {text.strip()} (NaN or infinite); fill or drop the gaps first")
    return value


def read_csv(path: Path, s: FileSeriesSettings) -> np.ndarray:
    """The file's numbers as a ``(lines, values)`` float64 array, checked cell by cell."""
    source = f"csv:{path}"
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh, delimiter=s.delimiter)
            rows = [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not a readable CSV file ({exc})") from None
    rows = rows[s.header_rows :]
    while rows and not any(cell.strip() for cell in rows[-1][1]):
        rows.pop()  # blank lines at the end
    if not rows:
        raise ConfigError(f"{source}: no data lines (after {s.header_rows} header lines)")
    first_line, first = rows[0]
    values = np.empty((len(rows), len(first)), dtype=np.float64)
    for i, (line, row) in enumerate(rows):
        if not row:
            raise ConfigError(f"{source}: line {line} is empty")
        if len(row) != len(first):
            raise ConfigError(
                f"{source}: line {line} has {len(row)} values but line {first_line} has {len(first)}: "
                "ragged rows; every sequence needs the same length"
            )
        for j, text in enumerate(row):
            values[i, j] = _cell(text, source, line, j + 1, s.header_rows)
    return values


def read_npy(path: Path) -> np.ndarray:
    """A 2-D numeric ``.npy`` array as float64, checked for NaN and infinity."""
    source = f"npy:{path}"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: not a readable .npy file ({' '.join(str(exc).split())})") from None
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"{source}: an .npz archive; save one 2-D array with np.save")
    if array.ndim != 2:
        raise ConfigError(f"{source}: shape {array.shape}; need a 2-D array (sequences x values, or the transpose "
                          "with file.layout=columns)")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ConfigError(f"{source}: dtype {array.dtype}; need numbers (integers or floats)")
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        i, j = bad[0]
        raise ConfigError(f"{source}: {array[i, j]} (NaN or infinite) at index [{i}, {j}] and {len(bad) - 1} "
                          "more; fill or drop the gaps first")
    return array


def read_series(
    kind: str, path: str | Path, s: FileSeriesSettings, n_sequences: int | None = None, seq_len: int | None = None
) -> np.ndarray:
    """``(n_sequences, seq_len)`` float64: one sequence per row of the result, whatever the file's layout."""
    if kind not in FILE_KINDS:
        raise ValueError(f"unknown series file kind {kind!r}; allowed: {', '.join(FILE_KINDS)}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{kind}:{path}: no such file")
    values = read_csv(path, s) if kind == "csv" else read_npy(path)
    if s.layout == "columns":
        values = values.T
    return np.ascontiguousarray(values[:n_sequences, :seq_len])
