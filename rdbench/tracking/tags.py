"""The tags rdbench writes on its runs: one name per fact, used by every layer that reads them.

On every cell run (the report and the MLflow UI group by them):

* ``rdbench.kind``: ``cell`` or ``grid`` (a study's parent run)
* ``rdbench.system``, ``rdbench.case``, ``rdbench.seed``, ``rdbench.profile``,
  ``rdbench.label`` (``system/case[overrides]``, the cell's row of Table 1)
* ``rdbench.config_hash``: hash of everything that shaped the result (skip-finished)
* ``rdbench.error``: the one-line error of a FAILED or KILLED run
* ``mlflow.source.git.commit``: the commit of the rdbench checkout, when known
* ``mlflow.source.name``: the command and its first argument (``rdbench grid smoke``: no ``/``,
  as the MLflow UI shows what follows the last one); ``rdbench.command``: the whole command line

On every run: how it was made (``rdbench.env.*``: Python, torch, MLflow, numpy, CUDA,
cuDNN, the device and its name; ``rdbench.git.dirty``), and on a DDPM run that continued
from a checkpoint, ``rdbench.checkpoint.*`` (its file, step and the run that wrote it).

On a grid's parent: ``rdbench.grid`` (the grid file's name) and ``rdbench.grid_file``;
``rdbench.study_name`` (the grid file's name, or ``--name``) and ``rdbench.study_id`` (a
short id: the first characters of the parent's run id, which ``--parent`` also takes);
``rdbench.partial`` on a run of part of a grid (``--only``, ``--set``: what it left out or
changed), which ``table`` and ``figures`` never pick by default; ``mlflow.note.content``
(the run's description in the MLflow UI: the grid file's ``description``, then Table 1).
On a grid's parent and on every run nested under it (its cells, the cells it reuses,
its phase maps): ``rdbench.study``, the parent's run id, so that one search lists a
study's parent together with all its runs (the MLflow UI then nests them).
"""

TAG_KIND = "rdbench.kind"
KIND_CELL = "cell"
KIND_GRID = "grid"
KIND_PHASE = "phase"  # a phase map over (F, k): one run, its table and figures

TAG_SYSTEM = "rdbench.system"
TAG_CASE = "rdbench.case"
TAG_LABEL = "rdbench.label"  # system/case[overrides]: the row a cell belongs to in Table 1
TAG_SEED = "rdbench.seed"
TAG_PROFILE = "rdbench.profile"
TAG_HASH = "rdbench.config_hash"
TAG_ERROR = "rdbench.error"
TAG_GRID = "rdbench.grid"
TAG_GRID_FILE = "rdbench.grid_file"
TAG_STUDY_NAME = "rdbench.study_name"
TAG_STUDY_ID = "rdbench.study_id"
TAG_PARTIAL = "rdbench.partial"
TAG_PHASE_HASH = "rdbench.phase_hash"  # a phase map's config hash: a killed map resumes from its run

TAG_GIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"
TAG_STUDY = "rdbench.study"  # the grid parent's run id, on the parent and on each run nested under it
TAG_FIRST_PARENT = "rdbench.first_parent"  # the grid that ran a cell, once a later grid reuses it
TAG_RUN_NAME = "mlflow.runName"
TAG_USER = "mlflow.user"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"

# How a run was made (on every run; rdbench.tracking.environment): the versions of the stack, the
# device, whether the checkout was dirty (its diff is then the artifact GIT_DIFF_ARTIFACT).
TAG_PYTHON = "rdbench.env.python"
TAG_TORCH = "rdbench.env.torch"
TAG_MLFLOW = "rdbench.env.mlflow"
TAG_NUMPY = "rdbench.env.numpy"
TAG_CUDA = "rdbench.env.cuda"  # the CUDA torch was built with ("none": a CPU build)
TAG_CUDNN = "rdbench.env.cudnn"  # cuDNN's version as torch reports it ("none" without cuDNN)
TAG_DEVICE = "rdbench.env.device"  # the device the run used: cpu, cuda:0
TAG_DEVICE_NAME = "rdbench.env.device_name"  # the GPU's name, or the CPU's model
TAG_GIT_DIRTY = "rdbench.git.dirty"  # "true" / "false"; absent outside a checkout
GIT_DIFF_ARTIFACT = "provenance/git_diff.patch"

# A DDPM run that continued from a checkpoint instead of training from scratch: where the weights came from.
TAG_CHECKPOINT = "rdbench.checkpoint.path"  # the checkpoint file it continued from
TAG_CHECKPOINT_STEP = "rdbench.checkpoint.step"  # the step that file was at
TAG_CHECKPOINT_RUN = "rdbench.checkpoint.run_id"  # the run that wrote it (its artifact checkpoints/latest.pt)

TAG_COMMAND = "rdbench.command"  # the whole command line (mlflow.source.name is its short form)
TAG_NOTE = "mlflow.note.content"  # the run's description (Markdown) in the MLflow UI
