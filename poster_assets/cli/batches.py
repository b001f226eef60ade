"""``poster-assets batches``: see, retry and abandon ingest batches (the Dagster partitions).

A batch's state comes from what exists (``ingest.batch_state``: its manifest, its rows, its
extraction records) and from Dagster (``defs.batch_runs.batch_states``: its latest run, which assets are
materialized for it). Dagster is imported inside the commands, so ``--help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from poster_assets.cli.output import emit
from poster_assets.ingest.batch_state import (
    EXTRACTORS,
    FAILED,
    INGESTED,
    PLANNED,
    RUNNING,
    STATES,
    UNFINISHED,
    BatchState,
)
from poster_assets.storage.store import Store

if TYPE_CHECKING:
    import dagster as dg

_COLUMNS = ["batch", "source", "created", "files", "ok/quar/dup", "extracted", "failed", "state"]


def _row(s: BatchState) -> tuple:
    f = s.facts
    source = f.source_dir or "(no manifest)"
    if len(source) > 40:
        source = "…" + source[-39:]
    counts = f"{f.ok}/{f.quarantined}/{f.duplicates}" if f.rows else "-"
    extracted = f"{f.extracted_total}/{f.expected_total}" if f.ok else "-"
    return (s.batch, source, f.created_at or "", f.files, counts, extracted, f.failed_total, s.state)


def finish_hint(s: BatchState) -> str:
    """The command that finishes ``s`` (and the one that drops it)."""
    if not s.facts.has_manifest and not s.facts.rows:
        # A partition added by hand in the UI: nothing to finish, no files behind it.
        return (
            f"it has no manifest (a partition added by hand?): drop it with "
            f"`poster-assets batches abandon {s.batch}`; "
            "batches come from `poster-assets ingest` or the inbox"
        )
    also = " (or `poster-assets run`)" if s.run.registered and s.facts.has_manifest else ""
    return (
        f"finish it with `poster-assets batches retry {s.batch}`{also}, "
        f"or drop it with `poster-assets batches abandon {s.batch}`"
    )


@click.group()
def batches() -> None:
    """Ingest batches (one Dagster partition each): their state, retry and abandon.

    States: planned (a manifest, no rows: its ingest never ran or was stopped), ingested
    (raw_posters written, some extractor not materialized yet), complete (every asset of
    batch_job materialized), failed (its latest run failed, was cancelled, or its process was
    killed), running (a run for it is queued or in progress).
    """


@batches.command("list")
@click.option("--state", "only", multiple=True, type=click.Choice(STATES), help="Only batches in this state.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
def batches_list(only: tuple[str, ...], fmt: str) -> None:
    """Every batch and its state, with its source folder, when it was made, files, ok /
    quarantined / duplicate rows and extraction progress (posters x extractors with a record at
    the current model version, and how many of those failed).

    Changes no row, manifest or blob file. Like every command that opens the Dagster instance,
    it first marks failed the runs a killed process left "started" and removes the `.tmp-*`
    leftovers of interrupted writes untouched for over an hour.
    """
    from poster_assets.cli import runs
    from poster_assets.defs import batch_runs

    inst = runs.instance()
    states = [s for s in batch_runs.batch_states(inst, Store.at()) if not only or s.state in only]
    if fmt == "json":
        click.echo(_json(states))
        return
    emit(_COLUMNS, [_row(s) for s in states], fmt)
    if fmt != "table":
        return
    for s in states:
        if s.state in UNFINISHED or s.state == RUNNING:
            click.echo(f"{s.batch}: {s.state} — {s.note}")
            if s.state != RUNNING:
                click.echo(f"  {finish_hint(s)}")
        if s.facts.failed_total:
            per_asset = ", ".join(f"{EXTRACTORS[a]} {n}" for a, n in s.facts.failed.items() if n)
            click.echo(f"{s.batch}: posters that failed an extractor: {per_asset}")


def _json(states: list[BatchState]) -> str:
    import json

    return json.dumps([s.as_dict() for s in states], indent=1, default=str)


def _states(inst: dg.DagsterInstance, store: Store, names: list[str]) -> dict[str, BatchState]:
    from poster_assets.defs import batch_runs

    return {s.batch: s for s in batch_runs.batch_states(inst, store, names)}


def _known(s: BatchState) -> bool:
    return s.facts.has_manifest or s.facts.rows > 0 or s.run.registered


@batches.command("retry")
@click.argument("names", nargs=-1, metavar="[BATCH]...")
@click.option("--failed", "every_failed", is_flag=True, help="Every batch whose state is failed.")
@click.option(
    "--raw-only", is_flag=True, help="Only raw_posters, as `ingest` without --extract does (no extractor)."
)
def retry(names: tuple[str, ...], every_failed: bool, raw_only: bool) -> None:
    """Run batch_job again for each BATCH (or, with --failed, every failed batch).

    Rows are only added: raw_posters skips the files the batch already has rows for, and each
    extractor processes only the batch's ok posters without a record at its current model
    version (a poster recorded as failed at that version is not redone). Blob files are only
    added. A batch whose partition is missing (its process stopped right after planning) is
    registered first. Afterwards `poster-assets run` brings the indexes and dbt models up to
    date. Exit status 1 when a run failed.
    """
    from poster_assets.cli import runs
    from poster_assets.defs import batch_runs

    if not names and not every_failed:
        raise click.UsageError("name a BATCH (see `poster-assets batches list`) or pass --failed")
    store = Store.at()
    inst = runs.instance()
    targets = list(dict.fromkeys(names))
    if every_failed:
        targets += [
            s.batch
            for s in batch_runs.batch_states(inst, store)
            if s.state == FAILED and s.batch not in targets
        ]
        if not targets:
            click.echo("no failed batch")
            return
    states = _states(inst, store, targets)
    for name in targets:
        s = states[name]
        if not _known(s):
            raise click.ClickException(f"no batch named {name!r}; see `poster-assets batches list`")
        if not s.facts.has_manifest:
            raise click.ClickException(
                f"batch {name} has no manifest, so there is nothing to re-read; "
                f"`poster-assets batches abandon {name}` removes what is left of it"
            )
        if s.state == RUNNING:
            raise click.ClickException(f"batch {name} is running ({s.note}); not retried")
    failed = []
    for name in targets:
        if runs.ensure_registered(inst, name):
            click.echo(f"batch {name}: added its missing Dagster partition")
        what = "raw_posters" if raw_only else "batch_job"
        click.echo(f"batch {name}: running {what} ({states[name].state} before) …")
        result = runs.run_batch(inst, name, only_raw=raw_only)
        after = _states(inst, store, [name])[name]
        f = after.facts
        click.echo(
            f"batch {name}: {after.state}; {f.ok} ok, {f.quarantined} quarantined, {f.duplicates} duplicate; "
            f"extracted {f.extracted_total}/{f.expected_total}, {f.failed_total} failed"
            + (f" — {after.note}" if after.note else "")
        )
        if not result.success:
            failed.append(name)
    if failed:
        raise click.ClickException(
            f"failed again: {', '.join(failed)}; see `poster-assets batches list` or `poster-assets ui`"
        )
    if not raw_only:
        click.echo("next: `poster-assets run` brings the similarity indexes and dbt models up to date")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@batches.command("abandon")
@click.argument("batch")
@click.option("--yes", is_flag=True, help="Do not ask before removing.")
def abandon(batch: str, yes: bool) -> None:
    """Remove BATCH and what only it brought in, so that its files can be ingested anew.

    Rows, in one DuckDB transaction: the batch's raw_posters rows and, for its posters that no
    other batch holds, their rows in extractions, ocr_text, depth_maps, foreground_masks,
    layer_masks, foreground_embeddings and poster_neighbors (also where such a poster is
    another's neighbour). Files, after the commit: the originals, thumbnails, depth maps, masks
    and layer labels that only those rows used; then the batch's manifest; then its Dagster
    partition (its run history stays). The source folder is never touched. It says what it
    will remove and asks first, unless --yes. A running batch is refused.
    """
    from poster_assets.cli import runs
    from poster_assets.ingest.batch_state import abandon as abandon_batch
    from poster_assets.ingest.batch_state import plan_abandon

    store = Store.at()
    inst = runs.instance()
    state = _states(inst, store, [batch])[batch]
    if not _known(state):
        raise click.ClickException(f"no batch named {batch!r}; see `poster-assets batches list`")
    if state.state == RUNNING:
        raise click.ClickException(f"batch {batch} is running ({state.note}); not abandoned")
    plan = plan_abandon(store.db, store.blobs, store.batches_dir, batch)
    source = f" from {state.facts.source_dir}" if state.facts.source_dir else ""
    click.echo(f"batch {batch} ({state.state}{source}, {state.facts.files} files); abandoning it removes:")
    rows = ", ".join(f"{table} {n}" for table, n in plan.rows.items()) or "none"
    click.echo(f"  rows:      {rows}")
    click.echo(f"  files:     {len(plan.files)} ({_mb(plan.file_bytes)}) under {store.home_path / 'blobs'}")
    click.echo(f"  manifest:  {plan.manifest or '(none)'}")
    click.echo(f"  partition: {batch if state.run.registered else '(none)'} in Dagster")
    if plan.shared:
        click.echo(
            f"  kept: the extracted values of {len(plan.shared)} poster(s) that another batch also holds"
        )
    if not yes:
        click.confirm(f"abandon batch {batch}?", default=False, abort=True)
    done = abandon_batch(store.db, store.blobs, store.batches_dir, batch)
    forgot = runs.forget_batch(inst, batch)
    click.echo(
        f"abandoned {batch}: {done.row_total} rows, {len(done.files)} files ({_mb(done.file_bytes)})"
        + (", its manifest" if done.manifest else "")
        + (" and its partition" if forgot else "")
        + " removed"
    )
    if done.row_total and runs.corpus_built(inst):
        # The indexes and marts still hold its posters: rebuild them now rather than leave search
        # answering with posters that are gone (an index holding unknown ids is rebuilt).
        click.echo("rebuilding the corpus-wide assets (indexes, dbt models) without it …")
        if not runs.run_corpus(inst).success:
            raise click.ClickException("the corpus rebuild failed; see `poster-assets ui` for the run log")


def explain_known_folder(
    inst: dg.DagsterInstance, store: Store, folder: Path, recursive: bool, extract: bool
) -> list[BatchState]:
    """For ``ingest`` when no file of ``folder`` is new: say which batches hold its files and
    what is left to do in each; return the batches that leave undone what was asked (planned
    or failed ones, and ingested ones when ``extract``)."""
    from poster_assets.defs import batch_runs
    from poster_assets.ingest.batch_state import batches_holding
    from poster_assets.ingest.batches import scan_folder

    holding = batches_holding(store.batches_dir, scan_folder(folder, recursive=recursive))
    states = batch_runs.batch_states(inst, store, list(holding)) if holding else []
    undone = []
    for s in states:
        n = holding[s.batch]
        line = f"  {n} file{'s' if n != 1 else ''} in batch {s.batch}: {s.state}"
        if s.state in (PLANNED, FAILED) or (extract and s.state == INGESTED):
            undone.append(s)
            click.echo(f"{line} — {s.note}")
            click.echo(f"    {finish_hint(s)}")
        elif s.state == INGESTED:
            click.echo(f"{line} (extractors not run: `poster-assets batches retry {s.batch}` runs them)")
        elif s.state == RUNNING:
            click.echo(f"{line} — {s.note}")
        else:
            click.echo(line)
    return undone


COMMANDS = [batches]
