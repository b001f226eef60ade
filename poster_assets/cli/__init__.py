"""``poster-assets``: the command line for people and for ``make demo``.

The commands live by domain: ``ingest`` (demo-corpus, bad-inputs, ingest, run, demo),
``batches`` (list, retry, abandon), ``models`` (the registry), ``query`` (sql, evaluate,
search, search-quality), ``indexes`` (rebuild-index) and ``maintenance`` (gc, train-encoder,
ui); ``runs`` materializes assets on the Dagster instance the UI shows, and ``output`` prints
tables. Heavy modules (Dagster, OpenVINO, torch) are imported inside the commands that need
them, so ``--help`` stays quick.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import click

from poster_assets.cli import batches, indexes, ingest, maintenance, models, query


def venv_bin_first_on_path() -> None:
    """Put this interpreter's bin folder (the venv's) first on PATH, for the processes the
    product starts (``dagster dev``, its code server, ``dbt``): ``.venv/bin/poster-assets`` must
    work without the venv activated."""
    bin_dir = str(Path(sys.executable).parent)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *rest])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """poster-assets: structure out of poster images, as Dagster assets in DuckDB.

    Files live under $POSTER_ASSETS_HOME (default ./poster_data).
    """
    venv_bin_first_on_path()


for _module in (ingest, batches, models, query, indexes, maintenance):
    for _command in _module.COMMANDS:
        main.add_command(_command)


def entry_point() -> None:
    """``poster-assets`` as a program (tests invoke ``main``). Python's last garbage collection
    at exit walks every object the process made, Dagster's and dbt's definitions included:
    about 1 s after every command (1.7 s after `ingest --extract`). Frozen objects are skipped
    by it and still released by reference counting, so freeze them once the command is done."""
    try:
        main()
    finally:
        gc.freeze()


__all__ = ["entry_point", "main"]
