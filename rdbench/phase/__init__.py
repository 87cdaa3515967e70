"""Phase maps: R and the pattern over the whole Gray-Scott (F, k) plane, in one MLflow run.

:mod:`~rdbench.phase.plan` (axes, points, memory-sized chunks), :mod:`~rdbench.phase.simulate`
(one chunk as one batch), :mod:`~rdbench.phase.labels` (none / spots / stripes-labyrinth /
oscillating / diverged), :mod:`~rdbench.phase.record` (chunks saved as they end, for resume),
:mod:`~rdbench.phase.figures` (heatmaps, mosaic), :mod:`~rdbench.phase.mapping` (the run).
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    """``rdbench.phase`` is this package and also the public function ``rdbench.phase(...)``
    (:func:`rdbench.api.phase`): once a submodule is imported, Python binds the package to the
    name ``phase`` of ``rdbench``, so the package itself forwards a call to the function."""

    def __call__(self, *args, **kwargs):
        from rdbench.api import phase  # the one upward import of the package (tests/test_layers.py)

        return phase(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
