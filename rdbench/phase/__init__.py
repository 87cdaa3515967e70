"""Phase maps: R and the pattern over the whole Gray-Scott (F, k) plane, in one MLflow run.

:mod:`~rdbench.phase.plan` (axes, points, memory-sized chunks), :mod:`~rdbench.phase.simulate`
(one chunk as one batch), :mod:`~rdbench.phase.labels` (none / spots / stripes-labyrinth /
oscillating / diverged), :mod:`~rdbench.phase.record` (chunks saved as they end, for resume),
:mod:`~rdbench.phase.figures` (heatmaps, mosaic), :mod:`~rdbench.phase.mapping` (the run).
"""
