"""``python -m rdbench``: the ``rdbench`` command."""

from rdbench.cli import main

main(prog_name="rdbench")
