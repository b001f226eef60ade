"""``poster-assets``: the command line for people and for ``make demo``."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from poster_assets import settings
from poster_assets.storage.resource import PosterStore


def _store() -> PosterStore:
    return PosterStore()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """poster-assets: structure out of poster images, as Dagster assets in DuckDB.

    Files live under $POSTER_ASSETS_HOME (default ./poster_data).
    """


@main.command("demo-corpus")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", default=200, show_default=True, help="Number of posters.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
def demo_corpus(out: Path, n: int, seed: int) -> None:
    """Generate synthetic posters with a sidecar and ground truth into OUT."""
    from poster_assets.demo import generate_corpus

    t0 = time.perf_counter()
    summary = generate_corpus(out, n=n, seed=seed)
    click.echo(f"{summary.n} posters in {out} ({time.perf_counter() - t0:.1f} s)")


@main.command("bad-inputs")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def bad_inputs(out: Path) -> None:
    """Write a folder of broken and awkward image files (and what ingest should say of each)."""
    from poster_assets.demo.bad_inputs import write_bad_inputs

    expected = write_bad_inputs(out)
    for name, status in sorted(expected.items()):
        click.echo(f"{status:<12} {name}")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--sidecar",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV or JSON-lines with file, title, genres, year (default: FOLDER/sidecar.jsonl|csv).",
)
@click.option("--recursive/--no-recursive", default=False, show_default=True, help="Descend into subfolders.")
@click.option("--extract", is_flag=True, help="Also run every extractor on the new batch.")
def ingest(folder: Path, sidecar: Path | None, recursive: bool, extract: bool) -> None:
    """Ingest the new files of FOLDER as one batch and materialize raw_posters for it."""
    from poster_assets import headless

    store = _store()
    inst = headless.instance()
    manifest = headless.plan_batch(store, folder, sidecar, recursive)
    if manifest is None:
        click.echo(f"nothing new in {folder}: every file is already in a batch")
        return
    headless.register_batch(inst, store, manifest)
    click.echo(f"batch {manifest.batch}: {len(manifest.files)} files")
    result = headless.run_batch(inst, manifest.batch, only_raw=not extract)
    _print_status_counts(store, manifest.batch)
    if not result.success:
        raise click.ClickException(f"batch {manifest.batch} failed; see `poster-assets ui` for the run log")


@main.command()
@click.option("--all", "every", is_flag=True, help="Re-run every batch (extractors skip up-to-date posters).")
def run(every: bool) -> None:
    """Materialize every batch that has missing assets, then the corpus-wide assets."""
    from poster_assets import headless

    inst = headless.instance()
    results = headless.run_pending(inst, every=every, echo=click.echo)
    failed = [b for b, ok in results if not ok]
    click.echo(f"{len(results)} run(s), {len(failed)} failed")
    if failed:
        raise click.ClickException(f"failed batches: {', '.join(failed)}")


@main.command()
@click.argument("query")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
def sql(query: str, fmt: str) -> None:
    """Run one read-only SELECT on the poster database."""
    from poster_assets.storage.readonly_sql import ReadOnlySqlError, run_readonly

    try:
        columns, rows = run_readonly(_store().db, query)
    except (ReadOnlySqlError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    _emit(columns, rows, fmt)


@main.command()
@click.option("--n", default=200, show_default=True, help="Posters in the demo corpus.")
@click.option("--seed", default=0, show_default=True)
def demo(n: int, seed: int) -> None:
    """Generate the demo corpus (once), ingest it and materialize every asset."""
    from poster_assets import headless
    from poster_assets.demo import generate_corpus

    t0 = time.perf_counter()
    store = _store()
    corpus = store.home_path / "demo_corpus"
    if not (corpus / "sidecar.jsonl").exists():
        click.echo(f"generating {n} demo posters in {corpus} …")
        generate_corpus(corpus, n=n, seed=seed)
    inst = headless.instance()
    manifest = headless.plan_batch(store, corpus, None, recursive=False)
    if manifest is not None:
        headless.register_batch(inst, store, manifest)
        click.echo(f"new batch {manifest.batch}: {len(manifest.files)} files")
    results = headless.run_pending(inst, echo=click.echo)
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


@main.group()
def models() -> None:
    """The model registry: what is present, pulled, verified, or replaced by a fallback."""


def _status_rows(statuses) -> list[tuple[str, ...]]:
    return [(s.spec.name, s.spec.task, s.spec.version, s.state, s.in_use, s.reason or "") for s in statuses]


@models.command("list")
def models_list() -> None:
    """Each registered model with its status (present / missing / fallback in use)."""
    from poster_assets.models.registry import list_specs
    from poster_assets.models.store import model_status

    statuses = [model_status(spec, settings.models_dir()) for spec in list_specs(settings.models_dir())]
    click.echo(
        _format_table(["name", "task", "version", "status", "in use", "why"], _status_rows(statuses), 60)
    )


@models.command("pull")
@click.argument("name")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the download.")
def models_pull(name: str, timeout: float) -> None:
    """Download NAME from its public source, verify its sha256 and put it in place atomically."""
    from poster_assets.models.registry import UnknownModelError
    from poster_assets.models.store import ModelUnavailableError, pull

    try:
        status = pull(name, timeout=timeout, models_dir=settings.models_dir())
    except (UnknownModelError, ModelUnavailableError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(f"{name}: {status.state} at {status.path}")


@models.command("verify")
def models_verify() -> None:
    """Re-hash every model file that is present."""
    from poster_assets.models.store import verify

    statuses = verify(settings.models_dir())
    click.echo(
        _format_table(["name", "task", "version", "status", "in use", "why"], _status_rows(statuses), 60)
    )
    if any(s.sha256_ok is False for s in statuses):
        raise click.ClickException("some model files do not match their pinned sha256")


@main.command()
@click.option("--details", is_flag=True, help="Also list every poster whose title was not read exactly.")
def evaluate(details: bool) -> None:
    """Extraction quality against the demo corpus's ground truth (title, layers, foreground)."""
    from poster_assets.extract.evaluate import evaluate as run_evaluation

    store = _store()
    try:
        result = run_evaluation(store.db, store.blobs)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if not result.posters:
        raise click.ClickException("no extracted poster has ground truth; run `make demo` first")
    click.echo(f"{result.posters} posters with ground truth")
    for kind, version in result.versions.items():
        click.echo(f"  {kind:<10} {version}")
    click.echo(_format_table(["metric", "value", "target", "verdict"], result.table()))
    if details:
        misses = [
            (r["file"], r["truth"], r["read"], f"{r['cer']:.2f}") for r in result.per_poster if not r["exact"]
        ]
        click.echo(_format_table(["file", "truth", "read", "cer"], misses))


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def gc(dry_run: bool) -> None:
    """Remove rows and files made by model versions that are no longer current."""
    from poster_assets.defs.extract.resources import ModelsResource
    from poster_assets.extract.embed_steps import embeddings_version, kind_versions, ssl_version
    from poster_assets.extract.gc import collect_garbage
    from poster_assets.extract.steps import layers_version

    models = ModelsResource()
    current = {
        "ocr_text": models.ocr_version(),
        "depth_maps": models.depth().version,
        "foreground_masks": models.foreground().version,
    }
    current["layer_masks"] = layers_version(
        current["depth_maps"], current["foreground_masks"], current["ocr_text"]
    )
    kinds = kind_versions(current["foreground_masks"], ssl_version(models.path))
    current["embedding_kinds"] = kinds
    current["foreground_embeddings"] = embeddings_version(kinds)
    store = _store()
    report = collect_garbage(store.db, store.blobs, current, dry_run=dry_run)
    rows = [(table, version, n) for (table, version), n in sorted(report.rows.items())]
    if not rows:
        click.echo("nothing to remove: every value is at its current model version")
        return
    click.echo(_format_table(["table", "old version", "rows"], rows, 70))
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {sum(report.rows.values())} rows and {report.files} files")


@main.command("train-encoder")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (default: the asset's, 300).")
def train_encoder(steps: int | None) -> None:
    """Train the SSL encoder on every labelled poster and make it the current one (ssl_job).

    Then `poster-assets run --all` adds the `ssl` embeddings and index (`search --kind ssl`).
    """
    from poster_assets import headless
    from poster_assets.defs.extract.resources import ModelsResource
    from poster_assets.extract.embed_steps import current_ssl_encoder

    inst = headless.instance()
    click.echo("training the SSL encoder (minutes on a CPU) …")
    result = headless.run_ssl(inst, steps)
    if not result.success:
        raise click.ClickException("training failed; see `poster-assets ui` for the run log")
    encoder = current_ssl_encoder(ModelsResource().path)
    if encoder is None:
        raise click.ClickException("training ran, but no healthy encoder was made current (see the run log)")
    click.echo(f"current encoder: {encoder.version} ({encoder.ir_path})")
    click.echo("next: `poster-assets run --all` embeds every poster with it")


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the Dagster UI on the same instance the CLI uses."""
    from poster_assets import headless

    headless.instance()
    root = Path(__file__).resolve().parent.parent
    os.execvp(
        "dagster",
        ["dagster", "dev", "-w", str(root / "workspace.yaml"), "-p", str(port)],
    )


def _run_sql(store: PosterStore, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from poster_assets.storage.readonly_sql import run_readonly

    return run_readonly(store.db, query)


def _print_status_counts(store: PosterStore, batch: str) -> None:
    counts = store.db.query(
        "SELECT status, count(*) FROM raw_posters WHERE batch = ? GROUP BY ALL ORDER BY 1", [batch]
    )
    click.echo(", ".join(f"{n} {status}" for status, n in counts) or "no new rows")
    bad = store.db.query(
        "SELECT file_name, reason FROM raw_posters WHERE batch = ? AND status = 'quarantined' ORDER BY 1",
        [batch],
    )
    for name, reason in bad:
        click.echo(f"  quarantined {name}: {reason}")


def _emit(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> None:
    if fmt == "json":
        click.echo(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=_json_default, indent=1)
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        click.echo(_format_table(columns, rows))


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _format_table(columns: list[str], rows: list[tuple[Any, ...]], max_width: int = 48) -> str:
    def cell(v: Any) -> str:
        text = "NULL" if v is None else str(v)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


# Embedding kinds, spelled out so the CLI starts without importing OpenCV (a test keeps them
# equal to poster_assets.extract.embed_steps.ALL_KINDS: the EMBEDDING_KINDS plus "ssl").
_SEARCH_KINDS = ("foreground", "poster", "pixels", "ssl")


@main.command()
@click.option("--poster-id", help="An ingested poster's id (or a unique prefix); it is left out of the hits.")
@click.option(
    "--image",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Any image file; an ingested poster's own copy is normally its top hit.",
)
@click.option("--kind", type=click.Choice(_SEARCH_KINDS), default="foreground", show_default=True)
@click.option("--k", default=10, show_default=True, help="Number of hits.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained contact sheet (thumbnails inlined) to this HTML file.",
)
def search(
    poster_id: str | None, image: Path | None, kind: str, k: int, fmt: str, html_out: Path | None
) -> None:
    """Posters most similar to an ingested poster (--poster-id) or to an image file (--image).

    Similarity is the cosine of the KIND embeddings: foreground (the subject crop), poster
    (the whole poster) or pixels (a raw-pixel baseline). Needs the indexes that
    `poster-assets run` builds.
    """
    from poster_assets.search import api

    if (poster_id is None) == (image is None):
        raise click.UsageError("give exactly one of --poster-id or --image")
    store = _store()
    try:
        hits = api.search(query_poster_id=poster_id, image_path=image, kind=kind, k=k, store=store)
    except api.SearchError as exc:
        raise click.ClickException(str(exc)) from None
    columns = ["rank", "score", "title", "genres", "file", "poster_id"]
    if fmt == "json":
        rows = [
            (i, round(h.score, 4), h.title, h.genres, h.file_name, h.poster_id)
            for i, h in enumerate(hits, start=1)
        ]
        _emit(columns, rows, "json")
    else:
        rows = [
            (i, f"{h.score:.3f}", h.title, ", ".join(h.genres), h.file_name, h.poster_id[:12])
            for i, h in enumerate(hits, start=1)
        ]
        click.echo(_format_table(columns, rows))
        if poster_id is not None:
            click.echo("(the query poster itself is not listed)")
    if html_out is not None:
        from poster_assets.search.html import write

        query = image if image is not None else api.poster_thumbnail(poster_id, store)
        label = str(image) if image is not None else f"poster {poster_id}"
        write(html_out, hits, f"Posters like {label}", f"{kind} embedding, top {k}", query)
        click.echo(f"contact sheet: {html_out}", err=fmt == "json")


@main.command("search-quality")
@click.option("--k", default=10, show_default=True, help="Neighbours for genre precision.")
@click.option(
    "--duplicates", default=30, show_default=True, help="Posters whose altered copies are searched."
)
def search_quality(k: int, duplicates: int) -> None:
    """Retrieval quality of each embedding kind on the ingested corpus, against the pixels baseline.

    Genre precision@k: share of each poster's k nearest others that share its primary genre
    (from the sidecar). dup@1: resized, JPEG-recompressed and slightly cropped copies of up
    to --duplicates posters, embedded like a search query, that find their own poster first.
    """
    from poster_assets.search.evaluate import NoEmbeddingsError, evaluate_retrieval

    t0 = time.perf_counter()
    try:
        result = evaluate_retrieval(_store(), k=k, duplicates=duplicates, progress=click.echo)
    except (NoEmbeddingsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{result.posters_with_genres} posters with genres (chance genre P@{k} = {result.chance:.3f}); "
        f"{result.duplicates_tested} posters x 3 altered copies; {time.perf_counter() - t0:.0f} s"
    )
    columns, rows = result.table()
    click.echo(_format_table(columns, rows))


if __name__ == "__main__":
    main()
