"""Planning and running a study: cells, the runner, grids.

* :mod:`.cells` -- a cell is one (system, case, seed) with resolved, validated settings;
  :func:`~.cells.plan_cells` builds and checks them before anything runs;
* :mod:`.runner` -- runs cells, batching those a system can advance together, one
  MLflow run per cell, failures isolated per cell;
* :mod:`.grid` -- grid files (``conf/<grid>.yaml``): schema, planning, ``--only``;
* :mod:`.execution` -- a grid as one parent run with a child per cell, skip-finished,
  the manifest.

Nothing here knows any particular system: systems are reached through the plug-in
their ``conf/systems/<name>.yaml`` names.
"""
