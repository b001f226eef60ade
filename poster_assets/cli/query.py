"""Reading what was extracted: sql, evaluate, search and search-quality. No Dagster here: these
read the store (``Store.at()``, under ``$POSTER_ASSETS_HOME``) directly."""

from __future__ import annotations

import time
from pathlib import Path

import click

from poster_assets.cli.output import emit, format_table
from poster_assets.extract.versions import ALL_KINDS
from poster_assets.storage.store import Store


@click.command()
@click.argument("query")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Stop the query after this many seconds (default $POSTER_ASSETS_SQL_TIMEOUT_S, else 30; at most "
    "50): while it runs it holds the database file, which writers wait at most 60 s for.",
)
def sql(query: str, fmt: str, timeout_s: float | None) -> None:
    """Run one read-only SELECT on the poster database (memory capped by
    $POSTER_ASSETS_SQL_MEMORY_LIMIT, default 2GB)."""
    from poster_assets.storage.database import DatabaseBusyError
    from poster_assets.storage.readonly_sql import ReadOnlySqlError, run_readonly

    try:
        columns, rows = run_readonly(Store.at().db, query, timeout_s=timeout_s)
    except (ReadOnlySqlError, FileNotFoundError, DatabaseBusyError) as exc:
        raise click.ClickException(str(exc)) from None
    emit(columns, rows, fmt)


@click.command()
@click.option(
    "--details",
    is_flag=True,
    help="Also list every poster whose title was not read exactly, and every poster whose subject "
    "layer matches the true foreground at IoU under 0.5 (with its foreground mask's IoU beside it).",
)
def evaluate(details: bool) -> None:
    """Extraction quality against the demo corpus's ground truth (title, layers, foreground).

    subject_layer_iou compares the subject layer with the true foreground; foreground_iou the
    foreground model's mask. Both depend on the foreground model in use (listed above the table).
    """
    from poster_assets.extract.evaluate import evaluate as run_evaluation
    from poster_assets.extract.versions import current_versions
    from poster_assets.models.hub import Models

    store = Store.at()
    try:
        result = run_evaluation(store.db, store.blobs, current_versions(Models(store.models_dir)).layers)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if not result.posters:
        raise click.ClickException("no extracted poster has ground truth; run `make demo` first")
    click.echo(f"{result.posters} posters with ground truth")
    for kind, version in result.versions.items():
        click.echo(f"  {kind:<10} {version}")
    click.echo(format_table(["metric", "value", "target", "verdict"], result.table()))
    if details:
        misses = [
            (r["file"], r["truth"], r["read"], f"{r['cer']:.2f}") for r in result.per_poster if not r["exact"]
        ]
        click.echo(format_table(["file", "truth", "read", "cer"], misses))
        weak = [
            (r["file"], f"{r['subject_iou']:.2f}", f"{r['fg_iou']:.2f}" if "fg_iou" in r else "n/a")
            for r in result.per_poster
            if r["subject_iou"] < 0.5
        ]
        click.echo(format_table(["file", "subject_layer_iou", "foreground_iou"], weak))


@click.command()
@click.option("--poster-id", help="An ingested poster's id (or a unique prefix); it is left out of the hits.")
@click.option(
    "--image",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Any image file; the poster it is a copy of (same file, or resized, recompressed, slightly "
    "cropped) comes first.",
)
@click.option("--kind", type=click.Choice(ALL_KINDS), default="foreground", show_default=True)
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
    (the whole poster) or pixels (a raw-pixel baseline). For --image, the stored poster it is a
    copy of ranks first whatever the kind: the same file (match "exact", score 1), then the same
    picture resized, recompressed or slightly cropped ("near-duplicate"), then the KIND ranking
    ("similar"). Needs the indexes that `poster-assets run` builds.
    """
    from poster_assets.search import api

    if (poster_id is None) == (image is None):
        raise click.UsageError("give exactly one of --poster-id or --image")
    store = Store.at()
    try:
        hits = api.search(query_poster_id=poster_id, image_path=image, kind=kind, k=k, store=store)
    except api.SearchError as exc:
        raise click.ClickException(str(exc)) from None
    columns = ["rank", "score", "match", "title", "genres", "file", "poster_id"]
    if fmt == "json":
        rows = [
            (i, round(h.score, 4), h.match, h.title, h.genres, h.file_name, h.poster_id)
            + (None if h.duplicate_similarity is None else round(h.duplicate_similarity, 4),)
            for i, h in enumerate(hits, start=1)
        ]
        emit([*columns, "duplicate_similarity"], rows, "json")
    else:
        rows = [
            (i, f"{h.score:.3f}", _match_cell(h), h.title, ", ".join(h.genres), h.file_name, h.poster_id[:12])
            for i, h in enumerate(hits, start=1)
        ]
        click.echo(format_table(columns, rows))
        if poster_id is not None:
            click.echo("(the query poster itself is not listed)")
        for match in dict.fromkeys(h.match for h in hits if h.match != "similar"):
            click.echo(f"{match}: {api.MATCHES[match]}; ranked before the similar posters")
    if html_out is not None:
        from poster_assets.search.html import write

        query = image if image is not None else api.poster_thumbnail(poster_id, store)
        label = str(image) if image is not None else f"poster {poster_id}"
        write(html_out, hits, f"Posters like {label}", f"{kind} embedding, top {k}", query)
        click.echo(f"contact sheet: {html_out}", err=fmt == "json")


def _match_cell(hit) -> str:
    """How a hit matched, with the whole-image similarity that made it a near-duplicate."""
    if hit.match == "near-duplicate" and hit.duplicate_similarity is not None:
        return f"near-duplicate ({hit.duplicate_similarity:.3f})"
    return hit.match


@click.command("search-quality")
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
        result = evaluate_retrieval(Store.at(), k=k, duplicates=duplicates, progress=click.echo)
    except (NoEmbeddingsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{result.posters_with_genres} posters with genres (chance genre P@{k} = {result.chance:.3f}); "
        f"{result.duplicates_tested} posters x 3 altered copies; {time.perf_counter() - t0:.0f} s"
    )
    columns, rows = result.table()
    click.echo(format_table(columns, rows))


COMMANDS = [sql, evaluate, search, search_quality]
