"""Getting posters in: the demo corpus, awkward inputs, ingest, run and demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from poster_assets.storage.store import Store


@click.command("demo-corpus")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", default=200, show_default=True, help="Number of posters.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
def demo_corpus(out: Path, n: int, seed: int) -> None:
    """Generate synthetic posters with a sidecar and ground truth into OUT."""
    from poster_assets.demo import generate_corpus

    t0 = time.perf_counter()
    summary = generate_corpus(out, n=n, seed=seed)
    click.echo(f"{summary.n} posters in {out} ({time.perf_counter() - t0:.1f} s)")


@click.command("bad-inputs")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def bad_inputs(out: Path) -> None:
    """Write a folder of broken and awkward image files (and what ingest should say of each)."""
    from poster_assets.demo.bad_inputs import write_bad_inputs
    from poster_assets.ingest.names import printable

    expected = write_bad_inputs(out, extended=True)
    for name, status in sorted(expected.items()):
        click.echo(f"{status:<12} {printable(name)}")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--sidecar",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV or JSON-lines with file, title, genres, year (default: FOLDER/sidecar.jsonl|csv).",
)
@click.option("--recursive/--no-recursive", default=False, show_default=True, help="Descend into subfolders.")
@click.option(
    "--extract", is_flag=True, help="Also run every extractor on the new batch, then the indexes and marts."
)
def ingest(folder: Path, sidecar: Path | None, recursive: bool, extract: bool) -> None:
    """Ingest the new files of FOLDER as one batch and materialize raw_posters for it.

    When no file is new, it says which batches hold them and what is left to do in each.
    Exit status: 0 when the batch was ingested, or every file already sits in a batch that is
    complete, running, or ingested (without --extract); 1 when the run failed, or nothing was
    new and the files sit in a batch that is planned, failed, or (with --extract) not
    extracted yet: `poster-assets batches retry BATCH` finishes it.
    """
    from poster_assets.cli import runs
    from poster_assets.ingest.batches import plan_batch

    store = Store.at()
    inst = runs.instance()
    manifest, _ = plan_batch(store.batches_dir, folder, sidecar, recursive, prefix="cli")
    if manifest is None:
        from poster_assets.cli.batches import explain_known_folder

        click.echo(f"nothing new in {folder}: every file is already in a batch")
        undone = explain_known_folder(inst, store, folder, recursive, extract)
        if undone:
            names = " ".join(s.batch for s in undone)
            raise click.ClickException(
                f"nothing ingested: the files sit in unfinished batch(es) {names}; "
                f"`poster-assets batches retry {names}` finishes them"
            )
        return
    runs.register_batch(inst, store, manifest)
    click.echo(f"batch {manifest.batch}: {len(manifest.files)} files")
    result = runs.run_batch(inst, manifest.batch, only_raw=not extract)
    _print_status_counts(store, manifest.batch)
    if not result.success:
        raise click.ClickException(
            f"batch {manifest.batch} failed; `poster-assets batches list` says where, "
            f"`poster-assets batches retry {manifest.batch}` finishes it"
        )
    if extract:
        # Extracted posters belong in the indexes and marts too: the corpus follows the batch.
        from poster_assets.extract.versions import current_versions
        from poster_assets.models.hub import Models

        current = current_versions(Models(store.models_dir))
        if runs.refresh_corpus(inst, store, current, click.echo) is False:
            raise click.ClickException(
                "the corpus-wide assets failed; see `poster-assets ui` for the run log"
            )


@click.command()
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Also run every batch with a poster left to do at the current model versions "
    "(a batch complete at them is not run again).",
)
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batch runs at once; needs POSTER_ASSETS_EXECUTOR=multiprocess or celery (README: "
    '"Many cores, many machines").',
)
def run(every: bool, parallel: int) -> None:
    """Materialize every batch that has missing assets, then the corpus-wide assets (indexes,
    dbt models) that are behind what they read. Nothing is launched that would change nothing."""
    from poster_assets.cli import runs

    inst = runs.instance()
    results = runs.run_pending(inst, every=every, echo=click.echo, parallel=parallel)
    failed = [b for b, ok in results if not ok]
    click.echo(f"{len(results)} run(s), {len(failed)} failed")
    if failed:
        raise click.ClickException(f"failed batches: {', '.join(failed)}")


@click.command()
@click.option("--n", default=200, show_default=True, help="Posters in the demo corpus.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--offline",
    is_flag=True,
    help="Pull nothing: the models present, and the named fallbacks for the rest "
    "(also when POSTER_ASSETS_OFFLINE=1).",
)
def demo(n: int, seed: int, offline: bool) -> None:
    """Pull the default models that are missing (unless offline), generate the demo corpus
    (once), ingest it and materialize every asset. Says which model each extractor uses and why."""
    from poster_assets.cli import runs
    from poster_assets.demo import generate_corpus
    from poster_assets.ingest.batches import plan_batch

    t0 = time.perf_counter()
    store = Store.at()
    _demo_models(offline)
    corpus = store.home_path / "demo_corpus"
    if not (corpus / "sidecar.jsonl").exists():
        click.echo(f"generating {n} demo posters in {corpus} …")
        generate_corpus(corpus, n=n, seed=seed)
    inst = runs.instance()
    manifest, _ = plan_batch(store.batches_dir, corpus, None, recursive=False, prefix="cli")
    if manifest is not None:
        runs.register_batch(inst, store, manifest)
        click.echo(f"new batch {manifest.batch}: {len(manifest.files)} files")
    results = runs.run_pending(inst, echo=click.echo)
    failed = [b for b, ok in results if not ok]
    _, counts = _run_sql(store, "SELECT status, count(*) FROM raw_posters GROUP BY ALL ORDER BY 1")
    click.echo("")
    click.echo("posters: " + ", ".join(f"{n} {status}" for status, n in counts))
    click.echo(f"database: {store.db_path}")
    click.echo(f"took {time.perf_counter() - t0:.0f} s")
    click.echo('query:    .venv/bin/poster-assets sql "SELECT * FROM raw_posters LIMIT 5"')
    click.echo("UI:       make ui   (then open http://127.0.0.1:3000)")
    if failed:
        raise click.ClickException(f"failed batches: {', '.join(failed)}")


def _demo_models(offline: bool) -> None:
    """Pull the extractors' default models that are missing (never when offline), then one line
    per extractor: the version it will run and why (pulled / present / fallback and its cause)."""
    from poster_assets import settings
    from poster_assets.models.defaults import fetch_defaults, in_use_line
    from poster_assets.models.hub import Models

    offline = offline or settings.offline()
    models_dir = settings.models_dir()
    if not offline:
        click.echo("models: pulling the default models that are missing (--offline skips this) …")
    fetched = fetch_defaults(models_dir, offline=offline)
    models = Models(models_dir)
    depth, foreground = models.depth(), models.foreground()
    click.echo("models" + (" (offline: nothing pulled)" if offline else "") + ":")
    for line in (
        in_use_line("ocr_text", models.ocr_version(), True, fetched),
        in_use_line("depth_maps", depth.version, depth.neural, fetched, depth.reason),
        in_use_line("foreground_masks", foreground.version, foreground.neural, fetched, foreground.reason),
        in_use_line("foreground_embeddings", models.efficientnet_version(), True, fetched),
    ):
        click.echo(f"  {line}")


def _run_sql(store: Store, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from poster_assets.storage.readonly_sql import run_readonly

    return run_readonly(store.db, query)


def _print_status_counts(store: Store, batch: str) -> None:
    """Status counts of the batch's rows, then everything a person should look at: quarantined
    files, sidecar values dropped and sidecar lines skipped, paths the scan skipped, and files of
    the manifest that have no row (none, unless ingest failed)."""
    with store.db.session():
        _print_rows(store, batch)


def _print_rows(store: Store, batch: str) -> None:
    from poster_assets.ingest.batches import BatchManifest
    from poster_assets.ingest.names import db_text, printable
    from poster_assets.ingest.sidecar import read_sidecar

    counts = store.db.query(
        "SELECT status, count(*) FROM raw_posters WHERE batch = ? GROUP BY ALL ORDER BY 1", [batch]
    )
    click.echo(", ".join(f"{n} {status}" for status, n in counts) or "no new rows")
    bad = store.db.query(
        "SELECT file_name, reason FROM raw_posters WHERE batch = ? AND status = 'quarantined' ORDER BY 1",
        [batch],
    )
    for name, reason in bad:
        click.echo(f"  quarantined {printable(name)}: {printable(reason or '')}")
    dropped = store.db.query(
        "SELECT file_name, sidecar_error FROM raw_posters "
        "WHERE batch = ? AND sidecar_error IS NOT NULL ORDER BY 1",
        [batch],
    )
    for name, error in dropped:
        click.echo(f"  sidecar values dropped for {printable(name)}: {printable(error)}")
    try:
        manifest = BatchManifest.load(store.batches_dir, batch)
    except FileNotFoundError:
        return
    if manifest.sidecar:
        for where, problem in read_sidecar(Path(manifest.sidecar)).problems:
            click.echo(f"  sidecar {printable(where)}: {printable(problem)}")
    for skipped in manifest.skipped:
        click.echo(f"  skipped {printable(skipped.path)}: {printable(skipped.reason)}")
    uris = [db_text(f.path) for f in manifest.files]
    have = {r[0] for r in store.db.query("SELECT source_uri FROM raw_posters WHERE source_uri IN ?", [uris])}
    missing = [uri for uri in uris if uri not in have]
    if missing:
        click.echo(f"  {len(missing)} of {len(manifest.files)} files have no row in raw_posters:")
        for uri in missing[:20]:
            click.echo(f"    {printable(uri)}")


COMMANDS = [demo_corpus, bad_inputs, ingest, run, demo]
