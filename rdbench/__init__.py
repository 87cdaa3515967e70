"""rdbench: the reaction/diffusion balance of Gray-Scott, LSTM and DDPM systems, tracked in MLflow.

The public Python API (docs/api.md), imported on first use so that ``import rdbench``
stays light (no torch, no MLflow):

* :func:`run` -- one cell (system, case, seed) as ``rdbench run`` runs it -> a ``RunResult``;
* :func:`grid` -- a grid file as ``rdbench grid`` runs it -> a ``Study``;
* :func:`table` -- Table 1 of a study as a pandas DataFrame;
* :func:`phase` -- a phase map over Gray-Scott's (F, k) plane -> its table (a DataFrame);
* :func:`load` -- any run read back from the tracking store.

Everything else in the package may change between versions.
"""

__version__ = "0.1.0"
__all__ = ["grid", "load", "phase", "run", "table"]


def __getattr__(name: str):
    if name == "phase":  # the package rdbench.phase, callable as the function (rdbench/phase/__init__.py)
        import rdbench.phase

        return rdbench.phase
    if name in __all__:
        from rdbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'rdbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
