"""rdbench.bench.store: N processes log a realistic cell each into one store at once, read back.

Against the session's PostgreSQL-backed server (8 processes, the count the issue
asks for at least): every cell lands, complete, and nothing is left RUNNING. The
worker retries each operation up to twice: rdbench's experiment get-or-create is
not atomic (its own issue), and the workers of a new study all create the
experiment at once. The sqlite numbers are measured by `rdbench bench store`, not
asserted here (they are what the lead decides from).
"""

from __future__ import annotations

import pytest

from rdbench.bench.store import CellShape, bench_store, format_results

SMALL = CellShape(params=60, series=2, points=1000, artifacts=3)


@pytest.mark.services
def test_eight_concurrent_cells_all_land_in_the_server(tracking_server):
    result = bench_store(tracking_server.tracking_uri, processes=8, shape=SMALL, retries=2, label="server")
    print("\n".join(format_results([result])))
    assert (result.expected, result.landed, result.lost) == (8, 8, 0), result.error_kinds
    assert result.errors == 0 and result.incomplete == 0 and result.duplicates == 0
    assert result.running_left == 0
    assert result.wall_s > 0 and result.worker_peak_rss_mb > 50
    header, row = format_results([result])[:2]
    assert header.split()[:5] == ["store", "N", "landed", "lost", "errors"]
    assert row.split()[:3] == ["server", "8", "8/8"]


def test_an_unreachable_store_loses_every_cell_and_says_why(tmp_path, monkeypatch):
    from rdbench.processes import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # else minutes of back-off (the workers inherit it)

    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens: every worker's first call fails
    result = bench_store(uri, processes=2, shape=CellShape(params=1, series=1, points=1, artifacts=1),
                         retries=0, label="nobody", timeout=300)
    assert (result.landed, result.lost, result.errors) == (0, 2, 2)
    assert result.retries == 0 and result.running_left == 0
    (kind,) = result.error_kinds
    assert kind.startswith("create run: ") and "Connection refused" in kind
    assert "Connection refused" in result.read_back_error
    lines = format_results([result])
    assert lines[-2].startswith("  nobody N=2: 2 x create run:")
    assert lines[-1].startswith("  nobody N=2: reading the store back failed:")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="series must be 1..6"):
        CellShape(series=7)
    with pytest.raises(ValueError, match="processes must be at least 1"):
        bench_store("sqlite:///x.db", processes=0)
