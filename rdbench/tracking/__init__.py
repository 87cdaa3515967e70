"""MLflow tracking, written once for every system.

* :mod:`.tags` -- the tag names rdbench writes (the report and the UI group by them);
* :mod:`.store` -- the client, experiments and the paged run search;
* :mod:`.runs` -- :class:`~.runs.TrackedRun`: params, metrics, batched series, artifacts
  and the terminal status of one run (the systems' Recorder);
* :mod:`.models` -- datasets (``log_input``) and trained networks (``mlflow.pytorch.log_model``),
  and fetching a logged model's files back;
* :mod:`.manifest` -- the grid manifest (``grid/cells.json`` on a grid's parent run);
* :mod:`.ui` -- experiment tags that shape the MLflow UI's view of a study.

The store is MLflow's default (``sqlite:///mlflow.db`` in the working directory for
MLflow 3) unless ``MLFLOW_TRACKING_URI`` says otherwise. Nothing here knows any
particular system.
"""
