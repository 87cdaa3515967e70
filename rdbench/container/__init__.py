"""rdbench in its Docker image: :mod:`.spec` computes what a build or a run is (no engine
needed: dry runs, tests), :mod:`.engine` talks to Docker through the Docker SDK for Python.
Neither imports torch or MLflow, so a missing engine is reported within a second.
"""
