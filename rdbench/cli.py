"""The entry point of the ``rdbench`` command (``pyproject.toml``: ``rdbench = "rdbench.cli:main"``).

The commands themselves live in :mod:`rdbench.commands`; this module is the only
code outside that package that imports it.
"""

from rdbench.commands import main

if __name__ == "__main__":  # pragma: no cover
    main()
