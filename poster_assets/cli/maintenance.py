"""Keeping a home folder in shape: gc, the lake and its catalog, train-encoder and the Dagster UI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from poster_assets.cli.output import format_table
from poster_assets.storage.store import Store

# The repository root, where workspace.yaml is (this file is poster_assets/cli/maintenance.py).
_ROOT = Path(__file__).resolve().parents[2]


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def gc(dry_run: bool) -> None:
    """Remove rows and files made by model versions that are no longer current."""
    from poster_assets.extract.gc import collect_garbage
    from poster_assets.extract.versions import current_versions
    from poster_assets.models.hub import Models

    store = Store.at()
    current = current_versions(Models(store.models_dir))
    report = collect_garbage(store.db, store.blobs, current, dry_run=dry_run)
    rows = [(table, version, n) for (table, version), n in sorted(report.rows.items())]
    if not rows:
        click.echo("nothing to remove: every value is at its current model version")
        return
    click.echo(format_table(["table", "old version", "rows"], rows, 70))
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {sum(report.rows.values())} rows and {report.files} files")


@click.group()
def lake() -> None:
    """The Parquet lake the batch steps write and the DuckDB catalog over it."""


@lake.command("status")
def lake_status() -> None:
    """Rows per table in the lake and in the catalog, and the segments not yet applied."""
    from poster_assets.storage.catalog import lake_status as status

    found = status(Store.at().db)
    click.echo(format_table(["table", "lake rows", "catalog rows"], found.tables, 70))
    click.echo(
        f"{found.segments} segments in {found.batches} batches; {found.pending} not yet in the catalog"
    )


@contextmanager
def _within_memory() -> Iterator[None]:
    """Out of DuckDB's memory limit: say what stays and how to go on, not a traceback."""
    import duckdb

    from poster_assets.storage.database import MEMORY_ENV, is_out_of_memory, memory_limit

    try:
        yield
    except duckdb.Error as exc:
        if not is_out_of_memory(exc):
            raise
        raise click.ClickException(
            f"DuckDB ran out of its {memory_limit()} ({MEMORY_ENV}): inserting into tables of millions "
            "of rows holds their primary-key indexes in memory. The groups of segments applied so far "
            f"stay; go on with a larger limit, e.g. `{MEMORY_ENV}=6GB poster-assets lake refresh` "
            "(a million posters took 6 GB)."
        ) from exc


@lake.command("refresh")
def lake_refresh() -> None:
    """Apply the segments the catalog lacks (runs also do this themselves)."""
    from poster_assets.storage.catalog import refresh_catalog

    with _within_memory():
        done = refresh_catalog(Store.at().db)
    if done.migrated:
        click.echo("exported the rows of a home made before the lake into lake/")
    click.echo(f"applied {done.segments} segments ({done.rows} rows)")


@lake.command("rebuild")
def lake_rebuild() -> None:
    """Make the catalog's tables again from the lake alone (after losing or damaging the file)."""
    from poster_assets.storage.catalog import rebuild_catalog

    with _within_memory():
        done = rebuild_catalog(Store.at().db)
    click.echo(f"rebuilt the catalog from {done.segments} segments ({done.rows} rows)")


@click.command("train-encoder")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (default: the asset's, 300).")
def train_encoder(steps: int | None) -> None:
    """Train the SSL encoder on every labelled poster and make it the current one (ssl_job).

    Then `poster-assets run --all` adds the `ssl` embeddings and index (`search --kind ssl`).
    """
    from poster_assets.cli import runs
    from poster_assets.models.hub import Models

    inst = runs.instance()
    click.echo("training the SSL encoder (minutes on a CPU) …")
    result = runs.run_ssl(inst, steps)
    if not result.success:
        raise click.ClickException("training failed; see `poster-assets ui` for the run log")
    encoder = Models(Store.at().models_dir).ssl_encoder()
    if encoder is None:
        raise click.ClickException("training ran, but no healthy encoder was made current (see the run log)")
    click.echo(f"current encoder: {encoder.version} ({encoder.ir_path})")
    click.echo("next: `poster-assets run --all` embeds every poster with it")


@click.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the Dagster UI on the same instance the CLI uses."""
    from poster_assets.cli import runs

    runs.instance()
    # `main` put the venv's bin folder first on PATH, so `dagster` and the processes it starts
    # (webserver, code server, dbt) are the venv's even when the venv is not activated.
    os.execvp("dagster", ["dagster", "dev", "-w", str(_ROOT / "workspace.yaml"), "-p", str(port)])


COMMANDS = [gc, lake, train_encoder, ui]
